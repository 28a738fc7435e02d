from django.core.management.base import BaseCommand, CommandError

from catalog.importers.images import import_images
from catalog.importers.report import ImportValidationError
from catalog.models import Image
from core.progress import ProgressBar
from jobs.services import tracked


class Command(BaseCommand):
    help = "Import galaxy images (PNG, JPEG, GIF, FITS) named pgc<N>_<band>.<ext>, or listed in a manifest CSV."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="*", help="image files or folders")
        parser.add_argument("--manifest", help="CSV with columns file, pgc, band[, survey, pixel_scale, orientation, inverted]")
        parser.add_argument("--survey", default="SDSS")
        parser.add_argument("--orientation", default=Image.Orientation.UNKNOWN, choices=Image.Orientation.values)
        parser.add_argument("--pixel-scale", type=float, help="pixel scale [arcsec/pixel] of all files")
        parser.add_argument("--partial", action="store_true", help="skip broken files instead of refusing all")

    def handle(self, *args, **opts):
        if not opts["paths"] and not opts["manifest"]:
            raise CommandError("give image files or folders, or --manifest")
        params = {k: opts[k] for k in ("paths", "manifest", "survey", "orientation", "pixel_scale", "partial")}
        try:
            with (
                ProgressBar("import_images", disable=opts["verbosity"] == 0) as bar,
                tracked("import_images", params, on_progress=bar) as job,
            ):
                report = import_images(
                    opts["paths"],
                    manifest=opts["manifest"],
                    survey=opts["survey"],
                    orientation=opts["orientation"],
                    pixel_scale=opts["pixel_scale"],
                    partial=opts["partial"],
                    progress=job.progress,
                )
                job.finish(report.as_dict(), report.summary())
        except ImportValidationError as exc:
            raise CommandError(str(exc)) from None
        for w in report.warnings:
            self.stderr.write(f"warning: {w}")
        self.stdout.write(self.style.SUCCESS(report.summary()))
