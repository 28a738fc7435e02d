from django.urls import path

from catalog import views

app_name = "catalog"

urlpatterns = [
    path("", views.home, name="home"),
    path("skymap.json", views.sky_map_json, name="sky-map"),
    path("galaxies/", views.galaxy_list, name="galaxy-list"),
    path("galaxies/download.<str:fmt>", views.galaxy_download, name="galaxy-download"),
    path("galaxies/<int:pgc>/", views.galaxy_detail, name="galaxy-detail"),
    path("upload/", views.upload_images, name="upload"),
    path("crossmatch/", views.crossmatch_view, name="crossmatch"),
    path("releases/", views.release_list, name="release-list"),
    path("releases/<slug:slug>/", views.release_detail, name="release-detail"),
    path("releases/<slug:slug>/download.<str:fmt>", views.release_download, name="release-download"),
    path("scs/", views.scs, name="scs"),
    path("scs/<slug:slug>/", views.scs, name="scs-release"),
]
