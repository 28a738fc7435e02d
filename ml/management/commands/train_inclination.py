import shlex

from django.core.management.base import BaseCommand, CommandError

from jobs.services import tracked
from ml.services import register_weights
from ml.train import add_width_options, check_config, config_from_options, format_seeds, format_stages, train_ensemble

_VALUED = (
    "members",
    "images",
    "epochs",
    "seed",
    "out",
    "batch_size",
    "lr",
    "dropout",
    "loss_scale_deg",
    "val_images",
    "threads",
    "jobs",
    "render_workers",
    "cache_dir",
    "device",
    "init_from",
    "wide",
    "stages",
    "hidden",
    "extra_seeds",
)
_FLAGS = ("warm_start", "no_register", "no_activate")
#: options whose value is written back in their own syntax, and which are left out when empty
_FORMATTED = {"stages": format_stages, "extra_seeds": format_seeds}


def _as_argv(o: dict) -> list[str]:
    """The command line that reproduces these options (recorded in the model card)."""
    argv = []
    for k in _VALUED:
        if o.get(k) is not None and not (k in ("wide", "extra_seeds") and not o[k]):
            argv += [f"--{k.replace('_', '-')}", _FORMATTED.get(k, str)(o[k])]
    if o.get("warm_start"):
        argv += ["--finetune-epochs", str(o["finetune_epochs"]), "--finetune-lr-factor", str(o["finetune_lr_factor"])]
    argv += [f"--{k.replace('_', '-')}" for k in _FLAGS if o.get(k)]
    return argv


class Command(BaseCommand):
    help = (
        "Train the bagged inclination CNN ensemble on synthetic images (resumable), write weights, "
        "manifest and model card to --out, and register a ModelVersion with the weights' sha256."
    )

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=3, help="ensemble members (each on its own 80%% subset)")
        parser.add_argument("--images", type=int, default=16000, help="synthetic training pool size")
        parser.add_argument("--epochs", type=int, default=5)
        parser.add_argument("--seed", type=int, default=1, help="seed of the training pool (validation: seed + 1000)")
        parser.add_argument("--out", default="ml/weights", help="output directory")
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--lr", type=float, default=2e-3)
        parser.add_argument("--dropout", type=float, default=0.2, help="dropout before and after the hidden layer")
        parser.add_argument("--loss-scale-deg", type=float, default=5.0, help="regression loss = squared error / scale^2")
        parser.add_argument("--val-images", type=int, default=1000)
        parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
        parser.add_argument("--cache-dir", default="var/ml_cache", help="cache of rendered inputs ('' for none)")
        parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
        parser.add_argument("--warm-start", action="store_true", help="members 1.. start from member 0 and fine-tune on their own bag")
        parser.add_argument("--finetune-epochs", type=int, default=1, help="epochs of members 1.. with --warm-start")
        parser.add_argument("--finetune-lr-factor", type=float, default=0.3, help="max lr of members 1.. relative to --lr")
        parser.add_argument("--jobs", type=int, default=1, help="members trained at once, one process each (sharing --threads)")
        parser.add_argument("--render-workers", type=int, default=1, help="processes that render the synthetic pool")
        parser.add_argument(
            "--init-from", default=None, help="continue training: member k starts from DIR/member{k}.pt (checked against DIR/ensemble.json)"
        )
        parser.add_argument(
            "--wide", type=float, default=0.0, help="share of pool and validation images drawn by the widened renderer (ml.synth.wide)"
        )
        add_width_options(parser)
        parser.add_argument("--no-register", action="store_true", help="do not create a ModelVersion row")
        parser.add_argument("--no-activate", action="store_true", help="register without making it the active version")

    def handle(self, *args, **o):
        for key in ("members", "images", "epochs", "batch_size", "val_images", "threads", "jobs", "render_workers"):
            if o[key] < 1:
                raise CommandError(f"--{key.replace('_', '-')} must be at least 1")
        if not 0.0 <= o["wide"] <= 1.0:
            raise CommandError("--wide must be between 0 and 1")
        cfg = config_from_options(o)
        try:
            check_config(cfg)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        command = "python manage.py train_inclination " + " ".join(shlex.quote(a) for a in _as_argv(o))
        params = {k: o[k] for k in ("members", "images", "epochs", "seed", "out")}
        with tracked("train_inclination", params, total=cfg.members) as job:
            card = train_ensemble(cfg, command=command, log=lambda s: (self.stderr.write(s), job.log(s)))
            result = {"ensemble_val": card["ensemble_val"], "wall_seconds": card["wall_seconds"]}
            if not o["no_register"]:
                mv = register_weights(cfg.out, activate=not o["no_activate"])
                result["model_version"] = mv.pk
                self.stderr.write(f"registered {mv} (sha256 {mv.sha256[:12]}..., active={mv.active})")
            job.update(cfg.members)
            job.finish(result, "trained")
