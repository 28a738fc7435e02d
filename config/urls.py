from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.static import serve

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("config.api")),
    path("jobs/", include("jobs.urls")),
    path("accounts/", include("accounts.urls")),
    path("zoo/", include("zoo.urls")),
    path("fitting/", include("fitting.urls")),
    path("", include("ml.urls")),
    path("", include("catalog.urls")),
    path("media/<path:path>", serve, {"document_root": settings.MEDIA_ROOT}),
]
