from django.apps import AppConfig


class ZooConfig(AppConfig):
    name = "zoo"
    verbose_name = "Galaxy Inclination Zoo"

    def ready(self) -> None:
        from zoo import signals

        signals.connect_summary_receivers()
