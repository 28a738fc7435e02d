from django.core.management.base import BaseCommand, CommandError

from catalog.importers.report import ImportValidationError
from catalog.importers.tables import FORMATS, import_catalog
from core.progress import ProgressBar
from jobs.services import tracked


class Command(BaseCommand):
    help = (
        "Import a catalog table (EDD pipe table, CSV, VOTable, FITS or OpenNGC), upserting galaxies by pgc: only the "
        "columns the table holds are written; streamed, so memory does not grow with the file (at most GALCAT_TABLE_MAX_BYTES)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="table file")
        parser.add_argument("--format", choices=FORMATS, help="table format (default: from the file name)")
        parser.add_argument("--partial", action="store_true", help="skip bad rows instead of refusing the table")

    def handle(self, *args, **opts):
        params = {"path": opts["path"], "format": opts["format"], "partial": opts["partial"]}
        try:
            with (
                ProgressBar("import_catalog", disable=opts["verbosity"] == 0) as bar,
                tracked("import_catalog", params, on_progress=bar) as job,
            ):
                report = import_catalog(opts["path"], opts["format"], partial=opts["partial"], progress=job.progress)
                job.finish(report.as_dict(), report.summary())
        except ImportValidationError as exc:
            raise CommandError(str(exc)) from None
        for w in report.warnings:
            self.stderr.write(f"warning: {w}")
        if report.problems:
            self.stderr.write(report.problem_text())
        self.stdout.write(self.style.SUCCESS(report.summary()))
