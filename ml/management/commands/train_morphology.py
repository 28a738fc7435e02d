import shlex

import torch
from django.core.management.base import BaseCommand, CommandError

from core.progress import ProgressBar
from jobs.services import tracked
from ml.morph.render import KINDS, MorphConfig
from ml.morph.train import TrainConfig, train_all
from ml.services import register_weights
from ml.weights_files import WeightsChecksumError

_VALUED = (
    "kinds",
    "images",
    "sizes",
    "size_weights",
    "val_images",
    "epochs",
    "seed",
    "batch_size",
    "lr",
    "width",
    "dropout",
    "threads",
    "device",
    "out",
    "init_from",
    "crop",
    "re_max",
    "re_max_fraction",
    "zoom_max",
)
#: Training steps between two progress updates of the Job row.
JOB_EVERY = 50


def _as_argv(o: dict) -> list[str]:
    """The command line that reproduces these options (recorded in the model card)."""
    argv = []
    for k in _VALUED:
        if o.get(k) is not None:
            argv += [f"--{k.replace('_', '-')}", str(o[k])]
    flags = [f"--{k.replace('_', '-')}" for k in ("no_psf_shape", "no_register", "no_activate") if o.get(k)]
    return argv + flags


class Command(BaseCommand):
    help = (
        "Train the morphology posterior networks (crop head + CNN + full-covariance head) on cutouts rendered by "
        "fitting.engine, write weights, manifest and model card to --out, and register a ModelVersion with the sha256."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated models: sersic, bulge_disk")
        parser.add_argument("--images", type=int, default=8192, help="training cutouts per model, split over --sizes by --size-weights")
        parser.add_argument("--sizes", default="64,128", help="comma-separated cutout sides (px)")
        parser.add_argument(
            "--size-weights", default=None, help="comma-separated relative shares of --images per side of --sizes (default: even)"
        )
        parser.add_argument("--val-images", type=int, default=1024, help="validation cutouts per model (seed + 500000)")
        parser.add_argument("--epochs", type=int, default=6)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--lr", type=float, default=2e-3)
        parser.add_argument("--width", type=int, default=16, help="channels of the first CNN layers (then 2x, 4x)")
        parser.add_argument("--dropout", type=float, default=0.1, help="dropout of the head (MC dropout at inference)")
        parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
        parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
        parser.add_argument("--out", default="ml/weights/morph", help="output directory")
        parser.add_argument(
            "--init-from",
            default=None,
            help="weights folder whose networks start the training (all but the sigma calibration when the crop head is of the same "
            "kind, else the CNN and head weights and the crop head afresh)",
        )
        parser.add_argument(
            "--crop",
            default="radius",
            choices=["radius", "learned"],
            help="crop head: zoom from a radius estimate, or GaMPEN's learnt zoom",
        )
        parser.add_argument(
            "--re-max", type=float, default=TrainConfig.re_max, help="upper end of the log-uniform prior of re (px) of the training renders"
        )
        parser.add_argument(
            "--re-max-fraction",
            type=float,
            default=TrainConfig.re_max_fraction,
            help="cap of the re prior as a fraction of the cutout side (a galaxy near the cap is pulled in by the prior)",
        )
        parser.add_argument(
            "--zoom-max",
            type=float,
            default=TrainConfig.zoom_max,
            help="largest view of the radius crop head, in cutout sides (above 1 a large galaxy is seen at the scale of the others, "
            "the view zero beyond the cutout)",
        )
        parser.add_argument(
            "--no-psf-shape",
            action="store_true",
            help="tell the network the PSF's FWHM only, not its shape (as the networks made before 2026-12-08)",
        )
        parser.add_argument("--no-register", action="store_true", help="do not create a ModelVersion row")
        parser.add_argument("--no-activate", action="store_true", help="register without making it the active morphology version")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **o):
        kinds = tuple(k.strip() for k in o["kinds"].split(",") if k.strip())
        bad = [k for k in kinds if k not in KINDS]
        if not kinds or bad:
            raise CommandError(f"--kinds: unknown {', '.join(bad) or '(none given)'}; expected {', '.join(KINDS)}")
        try:
            sizes = tuple(int(s) for s in o["sizes"].split(","))
        except ValueError as exc:
            raise CommandError(f"--sizes must be integers separated by commas: {exc}") from exc
        if any(s < 32 for s in sizes):
            raise CommandError("--sizes: cutouts must be at least 32 px on a side")
        try:
            size_weights = tuple(float(w) for w in o["size_weights"].split(",")) if o["size_weights"] else ()
        except ValueError as exc:
            raise CommandError(f"--size-weights must be numbers separated by commas: {exc}") from exc
        if size_weights and (len(size_weights) != len(sizes) or min(size_weights) <= 0):
            raise CommandError("--size-weights: one positive number per side of --sizes")
        if not (MorphConfig.re_range[0] < o["re_max"] and 0.0 < o["re_max_fraction"] <= 0.5):
            raise CommandError(f"--re-max must exceed {MorphConfig.re_range[0]:g} px and --re-max-fraction lie in (0, 0.5]")
        if not 1.0 <= o["zoom_max"] <= 4.0:
            raise CommandError("--zoom-max must lie in [1, 4] cutout sides")
        for key in ("images", "val_images", "epochs", "batch_size", "threads", "width"):
            if o[key] < 1:
                raise CommandError(f"--{key.replace('_', '-')} must be at least 1")
        device = o["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
        o["device"] = device
        cfg = TrainConfig(
            kinds=kinds,
            images=o["images"],
            sizes=sizes,
            size_weights=size_weights,
            val_images=o["val_images"],
            epochs=o["epochs"],
            seed=o["seed"],
            batch_size=o["batch_size"],
            lr=o["lr"],
            width=o["width"],
            dropout=o["dropout"],
            threads=o["threads"],
            device=device,
            out=o["out"],
            init_from=o["init_from"] or "",
            crop=o["crop"],
            re_max=o["re_max"],
            re_max_fraction=o["re_max_fraction"],
            zoom_max=o["zoom_max"],
            psf_shape=not o["no_psf_shape"],
        )
        command = "python manage.py train_morphology " + " ".join(shlex.quote(a) for a in _as_argv(o))
        params = {k: o[k] for k in ("kinds", "images", "epochs", "seed", "out")}
        with tracked("train_morphology", params, total=len(kinds)) as job, ProgressBar("train", disable=o["no_progress"]) as bar:

            def progress(step, steps):
                bar(step, steps)
                if step % JOB_EVERY == 0 or step == steps:
                    job.progress(step, steps)

            try:
                card = train_all(cfg, command=command, log=lambda s: (self.stderr.write(s), job.log(s)), progress=progress)
            except (FileNotFoundError, WeightsChecksumError, ValueError) as exc:
                raise CommandError(str(exc)) from exc  # --init-from weights that cannot start this run
            result = {"wall_seconds": card["wall_seconds"], "validation_nll": {m["kind"]: m["val_nll_calibrated"] for m in card["members"]}}
            if not o["no_register"]:
                mv = register_weights(cfg.out, activate=not o["no_activate"])
                result["model_version"] = mv.pk
                self.stderr.write(f"registered {mv} (sha256 {mv.sha256[:12]}..., active={mv.active})")
            job.finish(result, "trained")
