import json

from django.core.management.base import BaseCommand, CommandError

from zoo.consensus import consensus_report, get_method
from zoo.methods import MedianConsensus, format_report


class Command(BaseCommand):
    help = (
        "How well the consensus reproduces itself and known inclinations: RMS between two random halves of the "
        "volunteers, and RMS against calibration galaxies under cross-validation, naive median beside the full method."
    )

    def add_arguments(self, parser):
        parser.add_argument("--splits", type=int, default=20, help="random splits (default 20)")
        parser.add_argument("--seed", type=int, default=1, help="seed of the random splits (default 1)")
        parser.add_argument("--method", help="dotted path of the full method (default: settings.GALCAT_CONSENSUS_METHOD)")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args, **opts):
        if opts["splits"] < 2:
            raise CommandError("--splits must be at least 2")
        try:
            full = get_method(opts["method"])
        except (ImportError, TypeError) as exc:
            raise CommandError(f"unknown consensus method {opts['method']!r}: {exc}") from exc
        rep = consensus_report([MedianConsensus(), full], splits=opts["splits"], seed=opts["seed"])
        if rep["votes"] == 0:
            raise CommandError("no votes in the catalog: load some first (python manage.py load_sample)")
        self.stdout.write(json.dumps(rep, indent=2) if opts["json"] else format_report(rep))
