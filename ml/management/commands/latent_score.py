import csv
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml.latent.model import load_latent
from ml.latent.score import score_files
from ml.weights_files import WeightsChecksumError


class Command(BaseCommand):
    help = (
        "Outlier scores (higher is more unusual, against the shipped training distribution) and optionally the nearest "
        "other files in the latent space, for image files (PNG, JPEG, GIF, FITS); no database needed."
    )
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")
        parser.add_argument("--out", help="CSV file to write (default: stdout)")
        parser.add_argument("--weights", default=None, help="latent weights directory (default ml/weights/latent)")
        parser.add_argument("--neighbours", type=int, default=0, help="add the K nearest other files and their cosine distances")
        parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")

    def handle(self, *args, **o):
        missing = [f for f in o["files"] if not Path(f).is_file()]
        if missing:
            raise CommandError(f"no such file: {', '.join(missing)}")
        if o["neighbours"] < 0:
            raise CommandError("--neighbours must be 0 or more")
        try:
            model = load_latent(o["weights"], device=o["device"])
        except (FileNotFoundError, WeightsChecksumError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            header, rows = score_files(o["files"], model, neighbours=o["neighbours"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        fh = open(o["out"], "w", newline="") if o["out"] else sys.stdout  # noqa: SIM115
        try:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        finally:
            if o["out"]:
                fh.close()
        if o["out"]:
            self.stderr.write(f"{len(rows)} rows -> {o['out']}")
