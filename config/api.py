"""The REST API under /api/: the /api/v1/ router, the OpenAPI schema and its documentation
(Swagger UI and ReDoc served from drf-spectacular-sidecar, no internet needed), and the token
forms of the profile page. jobs, zoo, fitting and ml contribute their viewsets here through
their routes(), since the catalog imports none of them."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from catalog.api import views, web
from fitting import api_v1 as fitting_api
from jobs import api_v1 as jobs_api
from ml import api_v1 as ml_api
from zoo import api_v1 as zoo_api

router = DefaultRouter()
router.register("galaxies", views.GalaxyViewSet, basename="galaxy")
router.register("images", views.ImageViewSet, basename="image")
router.register("releases", views.ReleaseViewSet, basename="release")
for prefix, viewset, basename in (*zoo_api.routes(), *jobs_api.routes(), *ml_api.routes(), *fitting_api.routes()):
    router.register(prefix, viewset, basename=basename)

urlpatterns = [
    path("v1/token/", views.TokenView.as_view(), name="api-token"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("token/issue/", web.token_issue, name="api-token-issue"),
    path("token/revoke/", web.token_revoke, name="api-token-revoke"),
]
