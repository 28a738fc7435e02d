from django.core.management.base import BaseCommand

from catalog.sample import load_sample
from jobs.services import tracked


class Command(BaseCommand):
    help = "Load the shared sample data (../shared/data or GALCAT_SAMPLE_DATA), or a synthetic sample when absent."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="do nothing when the catalog holds galaxies")
        parser.add_argument("--synthetic", action="store_true", help="generate a synthetic sample even when shared data exists")

    def handle(self, *args, **opts):
        from catalog.models import Galaxy

        if opts["if_empty"] and Galaxy.objects.exists():
            self.stdout.write("Catalog not empty: sample not loaded.")
            return
        with tracked("load_sample", {"synthetic": opts["synthetic"]}) as job:
            out = load_sample(if_empty=False, synthetic=opts["synthetic"], say=self.stdout.write)
            job.finish(out or {}, "sample loaded")
        self.stdout.write(self.style.SUCCESS(f"Sample loaded: {out}"))
