import json
import shlex
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml.conf import conf
from ml.evaluation import (
    GALSIM_SEED,
    TEST_SEED,
    GalSimMissing,
    evaluate_galsim,
    evaluate_sdss,
    evaluate_synthetic,
    format_splits,
    format_table,
)
from ml.inference import Ensemble, WeightsChecksumError, default_weights_dir

THICKNESS_TITLE = "Residuals of the ensemble by the disk's intrinsic thickness"


def _argv(o: dict) -> list[str]:
    """The options that decide the figures (recorded in the --json report)."""
    argv = []
    for k in ("weights", "synthetic", "seed", "wide", "galsim", "galsim_seed", "sdss"):
        if o.get(k) is not None:
            argv += [f"--{k.replace('_', '-')}", str(o[k])]
    return argv + (["--no-tta"] if o.get("no_tta") else [])


class Command(BaseCommand):
    help = (
        "Evaluate the CNN ensemble, each member and the axis-ratio baseline side by side on a fresh-seed "
        "synthetic test set, on images of an independent renderer (GalSim; never used for training or for choosing "
        "runs) and on the shared SDSS cutouts with EDD labels (RMS, MAE, bias, by inclination bin)."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--weights", default=None, help="weights directory with ensemble.json (default: $GALCAT_ML_WEIGHTS or ml/weights)"
        )
        parser.add_argument("--synthetic", type=int, default=2000, help="images in the synthetic test set (0 to skip)")
        parser.add_argument("--seed", type=int, default=TEST_SEED, help="seed of the synthetic test set (never a training seed)")
        parser.add_argument(
            "--wide", type=int, default=0, help="images in a test set of the widened renderer (ml.synth.wide), same seed (0 to skip)"
        )
        parser.add_argument("--galsim", type=int, default=300, help="images in the GalSim test set (0 to skip; needs galsim)")
        parser.add_argument("--galsim-seed", type=int, default=GALSIM_SEED, help="seed of the GalSim test set")
        parser.add_argument("--sdss", default=None, help="folder with pgc*_{g,r,i}.png, pgc*_gri.jpg and labels.csv")
        parser.add_argument("--no-tta", action="store_true")
        parser.add_argument("--json", help="also write all figures to this JSON file")

    def handle(self, *args, **o):
        try:
            ens = Ensemble.load(o["weights"])
        except (FileNotFoundError, WeightsChecksumError) as exc:
            raise CommandError(str(exc)) from exc
        q0 = float(conf.Q0)
        tta = not o["no_tta"]
        report: dict = {
            "weights": str(o["weights"] or default_weights_dir()),
            "members": ens.names,
            "member_sha256": {m["file"]: m["sha256"] for m in ens.manifest["members"]},
            "name": ens.manifest.get("name", ""),
            "q0": q0,
            "tta": tta,
            "command": "python manage.py evaluate_inclination " + " ".join(shlex.quote(a) for a in _argv(o)),
        }
        if o["synthetic"] > 0:
            stats, extra = evaluate_synthetic(ens, n=o["synthetic"], seed=o["seed"], q0=q0, tta=tta, progress=True)
            report["synthetic"] = {"seed": o["seed"], "stats": stats, "extra": extra}
            self.stdout.write(
                format_table(f"Synthetic test set, seed {o['seed']}: {extra['n_accepted']} accepted disks of {extra['n_images']}", stats)
            )
            self.stdout.write(
                f"rejection: accuracy {extra['reject_accuracy']:.3f}, recall of rejects {extra['reject_recall']:.3f}, "
                f"false rejects {extra['false_reject_rate']:.3f}; mean stdev over passes {extra['mean_std']:.2f} deg, "
                f"mean predicted sigma {extra['mean_sigma_model']:.2f} deg"
            )
            self.stdout.write(_splits_text(THICKNESS_TITLE, extra))
        if o["wide"] > 0:
            stats, extra = evaluate_synthetic(ens, n=o["wide"], seed=o["seed"], q0=q0, tta=tta, progress=True, wide=1.0)
            report["wide"] = {"seed": o["seed"], "stats": stats, "extra": extra}
            title = (
                f"Widened synthetic test set (ml.synth.wide), seed {o['seed']}: {extra['n_accepted']} accepted disks of {extra['n_images']}"
            )
            self.stdout.write(format_table(title, stats))
            self.stdout.write(f"rejection: accuracy {extra['reject_accuracy']:.3f}, false rejects {extra['false_reject_rate']:.3f}")
            self.stdout.write(_splits_text(THICKNESS_TITLE, extra))
        if o["galsim"] > 0:
            try:
                stats, extra = evaluate_galsim(ens, n=o["galsim"], seed=o["galsim_seed"], q0=q0, tta=tta, progress=True)
            except GalSimMissing as exc:
                self.stderr.write(f"{exc}\nThe GalSim rows are skipped (--galsim 0 silences this).")
            else:
                report["galsim"] = {"seed": o["galsim_seed"], "stats": stats, "extra": extra}
                self.stdout.write(
                    format_table(f"Independent renderer (GalSim), seed {o['galsim_seed']}: {extra['n_images']} inclined disks", stats)
                )
                self.stdout.write(f"false rejects {extra['false_reject_rate']:.3f}")
                self.stdout.write(_splits_text("GalSim residuals of the ensemble by what the images were drawn with", extra, "hz/h"))
        folder = Path(o["sdss"]) if o["sdss"] else Path(conf.SAMPLE_DATA) / "sdss"
        if (folder / "labels.csv").exists():
            rows, stats = evaluate_sdss(ens, folder, q0=q0, tta=tta)
            report["sdss"] = {"folder": str(folder), "rows": rows, "stats": stats}
            for kind, st in stats.items():
                self.stdout.write(format_table(f"SDSS cutouts ({kind}), EDD inclinations, flag A", st) + "\n")
            self.stdout.write("per image: pgc file EDD_inc flag CNN+-std reject axis_ratio_inc (q)")
            for r in rows:
                self.stdout.write(
                    f"  {r['pgc']:>6} {r['file']:<18} {r['true_inc']:>5.0f} {r['flag'] or '-':>1} {r['cnn']:6.1f}+-{r['cnn_std']:4.1f} "
                    f"{r['reject_likelihood']:.2f} {r['axis_ratio_inc']:6.1f} ({r['q']:.2f})"
                )
        else:
            self.stderr.write(f"no labels.csv in {folder}: real-image evaluation skipped")
        if o["json"]:
            Path(o["json"]).write_text(json.dumps(report, indent=1, default=float))


def _splits_text(title: str, extra: dict, q0_name: str = "") -> str:
    """A set's residuals split by what its images were drawn with, and the share of the squared
    error that the disks' thickness carries (q0_name: what stands for q0 in that set)."""
    share = "share of the mean squared error in the mean error per (q0, inclination) cell" + (f" ({q0_name} for q0)" if q0_name else "")
    return format_splits(title, extra["splits"]) + f"\n{share}: {extra['thickness_share']:.2f}\n"
