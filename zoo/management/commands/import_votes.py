from django.core.management.base import BaseCommand, CommandError

from catalog.importers.report import ImportValidationError
from core.progress import ProgressBar
from jobs.services import tracked
from zoo.importers import import_votes


class Command(BaseCommand):
    help = "Import a Galaxy Inclination Zoo vote table (CSV); idempotent by vote id."

    def add_arguments(self, parser):
        parser.add_argument("path", help="GIZ votes CSV")
        parser.add_argument("--partial", action="store_true", help="skip bad rows instead of refusing the table")

    def handle(self, *args, **opts):
        params = {"path": opts["path"], "partial": opts["partial"]}
        try:
            with (
                ProgressBar("import_votes", disable=opts["verbosity"] == 0) as bar,
                tracked("import_votes", params, on_progress=bar) as job,
            ):
                report = import_votes(opts["path"], partial=opts["partial"], progress=job.progress)
                job.finish(report.as_dict(), report.summary())
        except ImportValidationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(report.summary()))
