import json
import shlex
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from zoo.consensus import (
    TruthTableError,
    consensus_report,
    default_truth_methods,
    get_method,
    read_truth_table,
    save_truth_scores,
    truth_report,
    truth_scores_record,
    write_truth_table,
)
from zoo.methods import MedianConsensus, format_report, format_truth_report


class Command(BaseCommand):
    help = (
        "How well the consensus reproduces itself and known inclinations: RMS between two random halves of the "
        "volunteers, and RMS against calibration galaxies under cross-validation, naive median beside the full method. "
        "With --truth FILE.csv (columns pgc, inc): every method against those inclinations, held out from all of them, "
        "by inclination bin and by input table, with the plain mean and median of the same votes. "
        "--write-truth FILE.csv writes such a table from the published inclinations in the catalog."
    )

    def add_arguments(self, parser):
        parser.add_argument("--splits", type=int, default=20, help="random splits (default 20)")
        parser.add_argument("--seed", type=int, default=1, help="seed of the random splits (default 1)")
        parser.add_argument("--method", help="dotted path of the full method (default: settings.GALCAT_CONSENSUS_METHOD)")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument("--truth", help="CSV with columns pgc, inc (deg): score every method against it, held out")
        parser.add_argument(
            "--save-scores",
            action="store_true",
            help="with --truth: store each method's RMS, bias and N in settings.GALCAT_CONSENSUS_SCORES (shown on the galaxy page and /compare/)",
        )
        parser.add_argument("--min-votes", type=int, default=3, help="measurements a truth galaxy needs to be scored (default 3)")
        parser.add_argument(
            "--write-truth",
            help="write a held-out truth table (pgc, inc, source) of galaxies with a published inclination and "
            "--min-votes measurements to this CSV file ('-' for stdout), then stop",
        )
        parser.add_argument("--truth-seed", type=int, default=1, help="seed choosing the held-out galaxies (default 1)")
        parser.add_argument("--truth-fraction", type=float, default=0.5, help="share of the eligible galaxies held out (default 0.5)")

    def handle(self, *args, **opts):
        if opts["splits"] < 2:
            raise CommandError("--splits must be at least 2")
        try:
            full = get_method(opts["method"])
        except (ImportError, TypeError) as exc:
            raise CommandError(f"unknown consensus method {opts['method']!r}: {exc}") from exc
        if opts["write_truth"]:
            self._write_truth(opts)
            return
        if opts["truth"]:
            try:
                truth = read_truth_table(opts["truth"])
            except FileNotFoundError as exc:
                raise CommandError(f"no such file: {opts['truth']}") from exc
            except TruthTableError as exc:
                raise CommandError(str(exc)) from exc
            methods = default_truth_methods()
            if full.label not in {m.label for m in methods}:
                methods.append(full)
            rep = truth_report(truth, methods, min_votes=opts["min_votes"], splits=opts["splits"], seed=opts["seed"])
            if rep["n_common"] == 0:
                raise CommandError(
                    f"none of the {rep['truth_rows']} truth galaxies has {opts['min_votes']} measurements and a value from every method"
                )
            self.stdout.write(json.dumps(rep, indent=2, default=float) if opts["json"] else format_truth_report(rep))
            if opts["save_scores"]:
                argv = ["--truth", opts["truth"], "--min-votes", opts["min_votes"], "--splits", opts["splits"], "--seed", opts["seed"]]
                command = "python manage.py consensus_report " + " ".join(shlex.quote(str(a)) for a in argv) + " --save-scores"
                path = save_truth_scores(truth_scores_record(rep, methods, opts["truth"], command))
                self.stderr.write(f"scores of {len(methods)} methods saved to {path}")
            return
        if opts["save_scores"]:
            raise CommandError("--save-scores needs --truth FILE.csv")
        rep = consensus_report([MedianConsensus(), full], splits=opts["splits"], seed=opts["seed"])
        if rep["votes"] == 0:
            raise CommandError("no votes in the catalog: load some first (python manage.py load_sample)")
        self.stdout.write(json.dumps(rep, indent=2) if opts["json"] else format_report(rep))

    def _write_truth(self, opts):
        if not 0.0 < opts["truth_fraction"] <= 1.0:
            raise CommandError("--truth-fraction must be in (0, 1]")
        out = opts["write_truth"]
        kw = {"seed": opts["truth_seed"], "fraction": opts["truth_fraction"], "min_votes": opts["min_votes"]}
        if out == "-":
            info = write_truth_table(self.stdout, **kw)
        else:
            if not Path(out).parent.exists():
                raise CommandError(f"no such folder: {Path(out).parent}")
            with open(out, "w", newline="") as fh:
                info = write_truth_table(fh, **kw)
        sys.stderr.write(
            f"{info['written']} of {info['eligible']} galaxies with a published inclination and >= {opts['min_votes']} measurements "
            f"(of {info['published']} published) -> {out} (seed {info['seed']}, fraction {info['fraction']:g})\n"
        )
