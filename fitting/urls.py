from django.urls import path

from fitting import views

app_name = "fitting"

urlpatterns = [
    path("<int:fit_id>/<str:which>.png", views.fit_png, name="png"),
]
