import shlex
from pathlib import Path

import torch
from django.core.management.base import BaseCommand, CommandError

from core.progress import ProgressBar
from jobs.services import tracked
from ml.latent.train import TrainConfig, train_latent
from ml.services import register_latent

_VALUED = (
    "dim",
    "beta",
    "width",
    "channels",
    "images",
    "val_images",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "contrastive",
    "inc_window",
    "adapt_steps",
    "adapt_weight",
    "holdout_fraction",
    "threads",
    "device",
    "out",
    "cache_dir",
)
#: Training steps between two progress updates of the Job row.
JOB_EVERY = 20


def _as_argv(o: dict) -> list[str]:
    """The command line that reproduces these options (recorded in the model card)."""
    argv = []
    for k in _VALUED:
        if o.get(k) is not None:
            argv += [f"--{k.replace('_', '-')}", str(o[k])]
    argv += [f"--{k.replace('_', '-')}" for k in ("full_net", "no_register", "no_activate") if o.get(k)]
    return argv + list(o.get("real") or [])


class Command(BaseCommand):
    help = (
        "Train the latent model (convolutional beta-VAE with a supervised contrastive term) on the ml.synth pool and "
        "optional real image files, optionally adapt it to the real images (gradient reversal), fit the map projection "
        "and the outlier density, write weights, manifest and model card to --out, and register a ModelVersion."
    )

    def add_arguments(self, parser):
        d = TrainConfig()
        parser.add_argument("real", nargs="*", help="real image files (PNG, JPEG, FITS), e.g. the SDSS cutouts")
        parser.add_argument("--dim", type=int, default=d.dim, help="latent dimension")
        parser.add_argument("--beta", type=float, default=d.beta, help="weight of the KL term (beta-VAE)")
        parser.add_argument("--width", type=int, default=d.width, help="channels of the first conv layers (then 2x, 4x, 8x)")
        parser.add_argument("--full-net", action="store_true", help="the full ConvVAE (more convolutions) instead of the light one")
        parser.add_argument("--channels", type=int, default=d.channels, choices=(1, 3), help="1 grey, 3 gri colour")
        parser.add_argument("--images", type=int, default=d.images, help="synthetic training images")
        parser.add_argument("--val-images", type=int, default=d.val_images, help="validation images (seed + 1000)")
        parser.add_argument("--epochs", type=int, default=d.epochs)
        parser.add_argument("--batch-size", type=int, default=d.batch_size)
        parser.add_argument("--lr", type=float, default=d.lr)
        parser.add_argument("--seed", type=int, default=d.seed)
        parser.add_argument(
            "--contrastive", type=float, default=d.contrastive, help="weight of the supervised contrastive term (0: plain VAE)"
        )
        parser.add_argument(
            "--inc-window", type=float, default=d.inc_window, help="disks within this inclination difference are positives (deg)"
        )
        parser.add_argument("--adapt-steps", type=int, default=d.adapt_steps, help="survey-adaptation steps with the real files (0: none)")
        parser.add_argument("--adapt-weight", type=float, default=d.adapt_weight, help="weight of the domain loss in adaptation")
        parser.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction, help="real galaxies kept out of the adaptation")
        parser.add_argument("--threads", type=int, default=d.threads, help="CPU threads for torch")
        parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
        parser.add_argument("--out", default=d.out, help="output directory")
        parser.add_argument("--cache-dir", default=d.cache_dir, help="render cache ('' for none)")
        parser.add_argument("--no-register", action="store_true", help="do not create a ModelVersion row")
        parser.add_argument("--no-activate", action="store_true", help="register without making it the active latent version")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **o):
        missing = [f for f in o["real"] if not Path(f).is_file()]
        if missing:
            raise CommandError(f"no such file: {', '.join(missing)}")
        for key in ("dim", "width", "images", "val_images", "epochs", "batch_size", "threads"):
            if o[key] < 1:
                raise CommandError(f"--{key.replace('_', '-')} must be at least 1")
        if o["val_images"] < 100:
            raise CommandError("--val-images must be at least 100 (the outlier density is fitted there)")
        if not 0.0 <= o["holdout_fraction"] < 1.0:
            raise CommandError("--holdout-fraction must be in [0, 1)")
        o["device"] = o["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
        cfg = TrainConfig(
            **{k: o[k] for k in _VALUED if k != "cache_dir"},
            cache_dir=o["cache_dir"] or None,
            light=not o["full_net"],
            real=list(o["real"]),
        )
        command = "python manage.py train_latent " + " ".join(shlex.quote(a) for a in _as_argv(o))
        params = {k: o[k] for k in ("dim", "beta", "images", "epochs", "seed", "out")} | {"real_files": len(o["real"])}
        with tracked("train_latent", params) as job, ProgressBar("train", disable=o["no_progress"]) as bar:

            def progress(step, steps):
                bar(step, steps)
                if step % JOB_EVERY == 0 or step == steps:
                    job.progress(step, steps)

            def log(s):
                self.stderr.write(s)
                job.log(s)

            try:
                card = train_latent(cfg, command=command, log=log, progress=progress)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            result = {"wall_seconds": card["wall_seconds"], "metrics": card["metrics"]}
            if not o["no_register"]:
                mv = register_latent(cfg.out, activate=not o["no_activate"])
                result["model_version"] = mv.pk
                self.stderr.write(f"registered {mv} (sha256 {mv.sha256[:12]}..., active={mv.active})")
            job.finish(result, "trained")
