from django.core.management.base import BaseCommand, CommandError

from ml.services import register_weights
from ml.weights_files import WeightsChecksumError


class Command(BaseCommand):
    help = (
        "Register a trained ensemble (a folder with ensemble.json, member files and model card) as a "
        "ModelVersion after checking every file's sha256, and make it the active version unless --no-activate. "
        "Prediction tasks then store predictions of that version beside those of earlier ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", help="weights folder, e.g. ml/weights_gpu")
        parser.add_argument("--name", default=None, help="model name (default: the manifest's)")
        parser.add_argument("--no-activate", action="store_true", help="register without making it the active version")

    def handle(self, *args, **o):
        try:
            mv = register_weights(o["directory"], name=o["name"], activate=not o["no_activate"])
        except FileNotFoundError as exc:
            raise CommandError(f"{o['directory']}: not a weights folder ({exc})") from exc
        except (WeightsChecksumError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        state = "active" if mv.active else "inactive"
        self.stdout.write(f"{mv.name} {mv.version}: {len(mv.files)} member files, {state}")
