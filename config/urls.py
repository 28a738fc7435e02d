from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from catalog.media import media_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("config.api")),
    path("jobs/", include("jobs.urls")),
    path("accounts/", include("accounts.urls")),
    path("zoo/", include("zoo.urls")),
    path("fitting/", include("fitting.urls")),
    path("", include("ml.urls")),
    path("", include("catalog.urls")),
    path(settings.MEDIA_URL.lstrip("/") + "<path:path>", media_view, name="media"),
]
