from django.apps import AppConfig


class FittingConfig(AppConfig):
    name = "fitting"
    verbose_name = "Profile fitting"
