"""python manage.py fit [--all | --pgc N ...] [--model sersic|bulge_disk] [--init auto|moments|cnn]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from fitting.models import FitResult
from fitting.services import INIT_CHOICES, NoInitialiserError, fit_and_store, image_ids_for, stale_image_ids
from jobs.services import tracked


class Command(BaseCommand):
    help = "Fit light profiles to catalog images and store one FitResult per image, model and engine version (re-runs update)."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every image")
        which.add_argument("--pgc", type=int, nargs="+", help="images of these galaxies")
        which.add_argument("--stale", action="store_true", help="images without a fit by the current engine")
        parser.add_argument("--model", choices=FitResult.Kind.values, default=FitResult.Kind.SERSIC)
        parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when present")
        parser.add_argument(
            "--init",
            choices=INIT_CHOICES,
            default="auto",
            help="start values: cnn = the active morphology network (GALCAT_FIT_INIT), moments = image moments, "
            "auto = the network when a morphology model is active, else moments",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **o):
        try:
            ids = stale_image_ids(o["model"]) if o["stale"] else image_ids_for(None if o["all"] else o["pgc"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not ids:
            self.stdout.write("no images to fit")
            return
        bar = tqdm(total=len(ids), unit="image", disable=o["no_progress"], desc=f"fit {o['model']}")

        def on_progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        with tracked("fit", {"model": o["model"], "images": len(ids)}, total=len(ids)) as job:
            try:
                out = fit_and_store(
                    ids, o["model"], device=o["device"], init=o["init"], progress=lambda d, t: (job.progress(d, t), on_progress(d, t))
                )
            except NoInitialiserError as exc:
                raise CommandError(str(exc)) from exc
            job.finish(result=out, message=f"{out['stored']} fits stored")
        bar.close()
        self.stdout.write(
            f"stored {out['stored']} fits ({out['converged']} converged, {out['failed']} failed); {out['missing']} image ids missing; "
            f"started from moments {out['started_from']['moments']}, from the network {out['started_from']['cnn']}"
        )
