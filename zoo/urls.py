from django.urls import path

from zoo import views as zoo_views

app_name = "zoo"

urlpatterns = [
    path("", zoo_views.vote_page, name="vote"),
    path("vote/", zoo_views.submit_vote, name="submit"),
    path("target/<int:image_id>.png", zoo_views.target_png, name="target"),
    path("standards/<int:inc>/<int:variant>.png", zoo_views.standard_render_png, name="standard-render"),
    path("standards/image/<int:pk>.png", zoo_views.standard_image_png, name="standard-image"),
    path("leaderboard/", zoo_views.leaderboard_page, name="leaderboard"),
    path("revote/<int:pgc>/", zoo_views.revote, name="revote"),
    path("override/<int:pgc>/", zoo_views.override, name="override"),
]
