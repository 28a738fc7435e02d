from django.urls import path

from ml import api, views

app_name = "ml"

urlpatterns = [
    path("api/pgc/<int:pgc>", api.pgc_view, name="api-pgc"),
    path("api/objname/<path:name>", api.objname_view, name="api-objname"),
    path("api/file", api.file_view, name="api-file"),
    path("compare/", views.compare, name="compare"),
]
