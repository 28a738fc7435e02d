import csv
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml.inference import Ensemble, WeightsChecksumError, predict_files

COLUMNS = ("file", "inc_median", "inc_mean", "inc_std", "reject_likelihood")


class Command(BaseCommand):
    help = "Predict inclinations of image files (PNG, JPEG, GIF, FITS) with the CNN ensemble; no database needed."
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")
        parser.add_argument("--out", help="CSV file to write (default: stdout)")
        parser.add_argument(
            "--weights", default=None, help="weights directory with ensemble.json (default: $GALCAT_ML_WEIGHTS or ml/weights)"
        )
        parser.add_argument("--rotate", action="store_true", help="rotate so the moment major axis is horizontal first")
        parser.add_argument("--no-tta", action="store_true", help="no test-time flips")
        parser.add_argument("--members", action="store_true", help="add one column per member")
        parser.add_argument("--mc-dropout", type=int, default=0, help="Monte-Carlo dropout passes per member and flip (0: off)")

    def handle(self, *args, **o):
        missing = [f for f in o["files"] if not Path(f).is_file()]
        if missing:
            raise CommandError(f"no such file: {', '.join(missing)}")
        try:
            ens = Ensemble.load(o["weights"])
        except (FileNotFoundError, WeightsChecksumError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            rows = predict_files(o["files"], ens, rotate=o["rotate"], tta=not o["no_tta"], mc_dropout=o["mc_dropout"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        cols = list(COLUMNS) + (list(ens.names) if o["members"] else [])
        fh = open(o["out"], "w", newline="") if o["out"] else sys.stdout  # noqa: SIM115
        try:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in rows:
                w.writerow([r[c] for c in COLUMNS] + (r["members"] if o["members"] else []))
        finally:
            if o["out"]:
                fh.close()
        if o["out"]:
            self.stderr.write(f"{len(rows)} rows -> {o['out']}")
