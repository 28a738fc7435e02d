from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from zoo.conf import conf
from zoo.standards import ReferenceError, ensure_rendered_standards, seed_references


class Command(BaseCommand):
    help = "Seed the voting page's standards and the calibration galaxies (giz_standards.csv, giz_calibration.csv), and render standard disks when no real standards with images cover 45-90 deg."

    def add_arguments(self, parser):
        parser.add_argument("--data", default=str(conf.SAMPLE_DATA), help="folder holding giz_standards.csv and giz_calibration.csv")
        parser.add_argument("--render-only", action="store_true", help="only render standard disks")

    def handle(self, *args, **opts):
        if not opts["render_only"]:
            try:
                out = seed_references(Path(opts["data"]))
            except ReferenceError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"standards: {out['standards']} ({out['standards_with_image']} with an image), calibration galaxies: {out['calibration']}"
            )
        made = ensure_rendered_standards()
        self.stdout.write(f"rendered standards made: {made}")
