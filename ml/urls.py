from django.urls import path

from ml import api, views

app_name = "ml"

urlpatterns = [
    path("api/pgc/<int:pgc>", api.pgc_view, name="api-pgc"),
    path("api/objname/<path:name>", api.objname_view, name="api-objname"),
    path("api/file", api.file_view, name="api-file"),
    path("compare/", views.compare, name="compare"),
    path("latent/map/", views.latent_map, name="latent-map"),
    path("latent/outliers/", views.outliers, name="outliers"),
    path("latent/outliers/verdict/", views.outlier_verdict, name="outlier-verdict"),
]
