from django.urls import path

from jobs import views as job_views

app_name = "jobs"

urlpatterns = [
    path("", job_views.jobs_page, name="list"),
    path("status.json", job_views.jobs_status, name="status"),
    path("<int:pk>/", job_views.job_page, name="detail"),
    path("<int:pk>.json", job_views.job_status, name="detail-json"),
    path("<int:pk>/cancel/", job_views.job_cancel, name="cancel"),
    path("<int:pk>/retry/", job_views.job_retry, name="retry"),
]
