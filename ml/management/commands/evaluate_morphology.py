import json
from pathlib import Path

import torch
from django.core.management.base import BaseCommand, CommandError

from ml.morph.calibration import write_calibration
from ml.morph.evaluate import SIZE_N, calibrate, evaluate, format_report, size_config
from ml.morph.posterior import load_nets
from ml.morph.reference import SersicPrior, training_prior
from ml.morph.train import CAL_SEED, TEST_SEED
from ml.weights_files import WeightsChecksumError

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "morph"


class Command(BaseCommand):
    help = (
        "Evaluate the morphology networks on a held-out rendered set: bias and scatter in Cramér-Rao units for the network, "
        "the LM fitter and the fitter started from the network, per SNR bin; coverage; size dependence; fitter starts."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="folder with ensemble.json (default: ml/weights/morph)")
        parser.add_argument("--n", type=int, default=512, help="galaxies per model at 64 px that the fitter fits")
        parser.add_argument(
            "--net-n", type=int, default=2048, help="galaxies per model at 64 px for the network's rows (the first --n of them are fitted)"
        )
        parser.add_argument("--size-n", type=int, default=SIZE_N, help="galaxies per model at 128 px for the size test")
        parser.add_argument("--seed", type=int, default=TEST_SEED, help="seed of the test set (never a training seed)")
        parser.add_argument("--size-kinds", default="sersic,bulge_disk", help="models of the size test (comma-separated)")
        parser.add_argument("--draws", type=int, default=1000, help="posterior samples per galaxy")
        parser.add_argument(
            "--passes", type=int, default=1, help="MC-dropout passes of the network's posterior (the draws split over them)"
        )
        parser.add_argument(
            "--more-passes", default="", help="also the network's rows with these numbers of MC-dropout passes (comma-separated)"
        )
        parser.add_argument(
            "--calibrate",
            action="store_true",
            help=f"first fit the posterior calibration (mean correction, interval scales) on a set of seed {CAL_SEED} drawn like "
            "the test set and write it to the weights' calibration.json",
        )
        parser.add_argument("--cal-n", type=int, default=4096, help="galaxies per model of the 64 px calibration set")
        parser.add_argument("--cal-size-n", type=int, default=2048, help="galaxies per model of the 128 px calibration set")
        parser.add_argument(
            "--cal-passes",
            default="1,50",
            help="numbers of MC-dropout passes to calibrate for (comma-separated; each use of the network finds the one it runs with)",
        )
        parser.add_argument(
            "--reference",
            type=int,
            default=0,
            help="also the Bayes reference (each galaxy's posterior under the Sérsic network's training prior, by importance "
            "sampling; about 1 s per galaxy and thread) on this many galaxies of the Sérsic size test",
        )
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--json", help="also write the figures to this JSON file")
        parser.add_argument("--markdown", help="also write the tables to this Markdown file (e.g. the weights' EVALUATION.md)")

    def handle(self, *args, **o):
        if min(o["n"], o["size_n"], o["cal_n"], o["cal_size_n"]) < 16:
            raise CommandError("--n, --size-n, --cal-n and --cal-size-n must be at least 16")
        cal_passes = tuple(int(p) for p in o["cal_passes"].split(","))
        more_passes = tuple(int(p) for p in o["more_passes"].split(",") if p)
        if min(o["passes"], *cal_passes, *more_passes) < 1 or o["draws"] < max(o["passes"], *cal_passes, *more_passes):
            raise CommandError("--passes, --more-passes and --cal-passes must be at least 1 and --draws at least each")
        torch.set_num_threads(o["threads"])
        try:
            nets = load_nets(o["weights"])
        except (FileNotFoundError, WeightsChecksumError) as exc:
            raise CommandError(str(exc)) from exc
        cmd = (
            f"python manage.py evaluate_morphology --n {o['n']} --net-n {o['net_n']} --size-n {o['size_n']} --seed {o['seed']} "
            f"--size-kinds {o['size_kinds']} --draws {o['draws']} --passes {o['passes']} --threads {o['threads']}"
            + (f" --more-passes {o['more_passes']}" if more_passes else "")
            + (f" --reference {o['reference']}" if o["reference"] else "")
            + (f" --calibrate --cal-n {o['cal_n']} --cal-size-n {o['cal_size_n']} --cal-passes {o['cal_passes']}" if o["calibrate"] else "")
        )
        if o["calibrate"]:
            cal = calibrate(nets, n=o["cal_n"], size_n=o["cal_size_n"], passes=cal_passes, draws=o["draws"], log=self.stderr.write)
            write_calibration(o["weights"], cal, cmd)
            nets = load_nets(o["weights"])
        prior = None
        if o["reference"] and "sersic" in nets and "sersic" in o["size_kinds"].split(","):
            try:
                card = json.loads((Path(o["weights"]) / "model_card.json").read_text())
                prior = SersicPrior.of(training_prior(card, "sersic", size_config("sersic", 1, 0).size))
            except (FileNotFoundError, ValueError) as exc:
                raise CommandError(f"--reference needs the Sérsic network's training prior: {exc}") from exc
        report = evaluate(
            nets,
            n=o["n"],
            net_n=o["net_n"],
            size_n=o["size_n"],
            seed=o["seed"],
            draws=o["draws"],
            passes=o["passes"],
            more_passes=more_passes,
            size_kinds=tuple(o["size_kinds"].split(",")),
            reference_n=o["reference"],
            reference_prior=prior,
            log=self.stderr.write,
        )
        text = format_report(report)
        self.stdout.write(text)
        if o["markdown"]:
            Path(o["markdown"]).write_text(f"# Morphology networks: held-out evaluation\n\n`{cmd}`\n\n{text}\n")
        if o["json"]:
            Path(o["json"]).write_text(json.dumps(report, indent=1, default=float))
