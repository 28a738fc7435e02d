from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from jobs.services import tracked
from zoo.consensus import compute_all, get_method, store_consensus, write_csv


class Command(BaseCommand):
    help = "Compute the volunteers' consensus inclinations, store them, and optionally write them to a CSV file."

    def add_arguments(self, parser):
        parser.add_argument("--out", help="write pgc, inc, inc_e, inc_n, flag, method to this CSV file ('-' for stdout)")
        parser.add_argument("--method", help="dotted path of a ConsensusMethod (default: settings.GALCAT_CONSENSUS_METHOD)")
        parser.add_argument("--no-store", action="store_true", help="compute only; leave the stored consensus as it is")

    def handle(self, *args, **opts):
        try:
            method = get_method(opts["method"])
        except (ImportError, TypeError) as exc:
            raise CommandError(f"unknown consensus method {opts['method']!r}: {exc}") from exc
        out = opts["out"]
        if out and out != "-" and not Path(out).parent.exists():
            raise CommandError(f"no such folder: {Path(out).parent}")
        with tracked("consensus", {"method": method.label, "out": out}) as job:
            rows, calibration = compute_all(method)
            if not opts["no_store"]:
                store_consensus(rows, method, calibration)
            flags = {f: sum(1 for r in rows if r.flag == f) for f in "AFJ"}
            job.finish({"galaxies": len(rows), **flags}, f"{len(rows)} consensus values")
        if out == "-":
            write_csv(rows, self.stdout)
        elif out:
            with open(out, "w", newline="") as f:
                write_csv(rows, f)
        self.stderr.write(
            f"{method.label}: {len(rows)} galaxies (A {flags['A']}, F {flags['F']}, J {flags['J']})" + (f" -> {out}" if out else "")
        )
