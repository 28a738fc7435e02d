from django.urls import path

from catalog import views

app_name = "catalog"

urlpatterns = [
    path("", views.home, name="home"),
    path("galaxies/", views.galaxy_list, name="galaxy-list"),
    path("galaxies/<int:pgc>/", views.galaxy_detail, name="galaxy-detail"),
]
