"""Rebuild the per-galaxy summary tables behind the derived columns (consensus, CNN, fit)."""

from django.core.management.base import BaseCommand

from catalog.summaries import refresh_all_summaries


class Command(BaseCommand):
    help = "Recompute every stored derived column (the apps' per-galaxy summary tables) from their source rows."

    def handle(self, *args, **options) -> None:
        for name, rows in refresh_all_summaries().items():
            self.stdout.write(f"{name}: {rows} galaxies")
