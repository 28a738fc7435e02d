from django.apps import AppConfig


class FittingConfig(AppConfig):
    name = "fitting"
    verbose_name = "Profile fitting"

    def ready(self) -> None:
        from fitting import signals

        signals.connect_summary_receivers()
