from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from jobs import triggers  # noqa: F401  (schedules after migrate)
        from jobs.tasks import recover_soon

        # A new worker process (one replaced after a kill, a restarted cluster) looks for work
        # whose worker died.
        post_spawn.connect(recover_soon, dispatch_uid="galcat.jobs.recover")
