import shlex
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml.latent.model import load_latent
from ml.latent.train import CALIBRATION_SEED, VAL_SEED_OFFSET, TrainConfig, fit_artefact_part, write_artefact_part
from ml.weights_files import LATENT_WEIGHTS_DIR, WeightsChecksumError


class Command(BaseCommand):
    help = (
        "Fit the artefact part of a latent model's outlier score (features of the display values before the percentile "
        "scale: saturated round blobs, sharp saturated hits, straight trails): scales on the validation seed's normal "
        "disks, weight and threshold on a calibration seed of injected anomalies. Rewrites space.json, the sha256 in "
        "ensemble.json and the model card of the weights folder."
    )
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--weights", default=None, help="latent weights directory (default ml/weights/latent)")
        parser.add_argument(
            "--validation-seed", type=int, default=None, help="seed of the normal disks (default: the model card's validation seed)"
        )
        parser.add_argument("--normal-images", type=int, default=2000, help="validation-seed images scanned for normal disks")
        parser.add_argument("--calibration-seed", type=int, default=CALIBRATION_SEED)
        parser.add_argument("--calibration-images", type=int, default=1500)
        parser.add_argument("--calibration-prevalence", type=float, default=0.1, help="fraction of injected anomalies")
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **o):
        import json

        import torch

        torch.set_num_threads(o["threads"])
        directory = Path(o["weights"]) if o["weights"] else LATENT_WEIGHTS_DIR
        if o["normal_images"] < 100 or o["calibration_images"] < 100:
            raise CommandError("--normal-images and --calibration-images must be at least 100")
        if not 0 < o["calibration_prevalence"] < 1:
            raise CommandError("--calibration-prevalence must be between 0 and 1")
        try:
            m = load_latent(directory, device="cpu")
        except (FileNotFoundError, WeightsChecksumError) as exc:
            raise CommandError(str(exc)) from exc
        card_path = directory / "model_card.json"
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        td = card.get("training_data")
        val_seed = o["validation_seed"] or (td.get("validation_seed") if isinstance(td, dict) else None)
        val_seed = int(val_seed if val_seed is not None else TrainConfig().seed + VAL_SEED_OFFSET)
        state = fit_artefact_part(
            m,
            val_seed,
            normal_images=o["normal_images"],
            calibration_seed=o["calibration_seed"],
            calibration_images=o["calibration_images"],
            calibration_prevalence=o["calibration_prevalence"],
            progress=not o["no_progress"],
        )
        command = "python manage.py fit_latent_score " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        manifest = write_artefact_part(directory, state, command)
        self.stdout.write(
            f"artefact part: weight {state['weight']}, threshold {state['threshold']}, calibration AUROC "
            f"{state['calibration_auroc']:.3f}, expected top 10 at 2 % {state['calibration_top10']:.1f} (seed {o['calibration_seed']}); {directory / 'space.json'} sha256 "
            + next(x["sha256"] for x in manifest["members"] if x["file"] == "space.json")
        )
