import json
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml.conf import conf
from ml.latent.evaluate import ANOMALY_SEED, SWEEP_DIMS, evaluate_anomalies, evaluate_real, evaluate_retrieval, report_markdown, sweep
from ml.latent.model import load_latent
from ml.latent.train import TEST_SEED, TrainConfig
from ml.weights_files import LATENT_WEIGHTS_DIR, WeightsChecksumError


class Command(BaseCommand):
    help = (
        "Evaluate the latent model: retrieval on a held-out labelled synthetic set (inclination difference to the 10 "
        "neighbours, class precision@10), injected anomalies at 2 %% (AUROC, top 10), the domain gap to the shared SDSS "
        "cutouts, the survey-adaptation figures of the model card and, with --sweep, a latent-dimension sweep of short "
        "trainings. Writes a markdown report (EVALUATION.md)."
    )
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--weights", default=None, help="latent weights directory (default ml/weights/latent)")
        parser.add_argument("--retrieval", type=int, default=2000, help="images of the retrieval test set (0 to skip)")
        parser.add_argument("--seed", type=int, default=TEST_SEED, help="seed of the retrieval test set (never a training seed)")
        parser.add_argument("--anomalies", type=int, default=2000, help="images of the anomaly test set (0 to skip)")
        parser.add_argument("--anomaly-seed", type=int, default=ANOMALY_SEED)
        parser.add_argument("--prevalence", type=float, default=0.02, help="fraction of injected anomalies")
        parser.add_argument("--sdss", default=None, help="folder of real cutouts (default: the shared sample's sdss)")
        parser.add_argument(
            "--sweep", default="", help=f"comma-separated latent dimensions to sweep, e.g. {','.join(map(str, SWEEP_DIMS))}"
        )
        parser.add_argument("--domain-synthetic", type=int, default=600, help="synthetic images of the domain-gap classifier")
        parser.add_argument("--sweep-images", type=int, default=3000, help="training images of each sweep run")
        parser.add_argument("--sweep-epochs", type=int, default=3, help="epochs of each sweep run")
        parser.add_argument("--sweep-test", type=int, default=1000, help="test images of each sweep run (retrieval and anomalies)")
        parser.add_argument(
            "--sweep-calibration",
            type=int,
            default=1500,
            help="validation and calibration images of each sweep model's artefact part (as fit_latent_score; 0: latent parts only)",
        )
        parser.add_argument("--sweep-dir", default=None, help="where the sweep's weights go (default: a temporary folder)")
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--device", default=None)
        parser.add_argument("--report", default=None, help="markdown report (default: WEIGHTS/EVALUATION.md; '-' for stdout only)")
        parser.add_argument("--json", help="also write all figures to this JSON file")

    def handle(self, *args, **o):
        import torch

        torch.set_num_threads(o["threads"])
        directory = Path(o["weights"]) if o["weights"] else LATENT_WEIGHTS_DIR
        try:
            m = load_latent(directory, device=o["device"])
        except (FileNotFoundError, WeightsChecksumError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            dims = tuple(int(d) for d in o["sweep"].split(",") if d.strip())
        except ValueError as exc:
            raise CommandError(f"--sweep must be integers separated by commas: {exc}") from exc
        card_path = directory / "model_card.json"
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        report: dict = {
            "model": m.name,
            "version": m.version,
            "command": "python manage.py evaluate_latent " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
            "adaptation": card.get("adaptation"),
        }
        if o["retrieval"] > 0:
            report["retrieval"] = r = evaluate_retrieval(m, n=o["retrieval"], seed=o["seed"])
            self.stdout.write(
                f"retrieval (seed {o['seed']}, {r['n']} images): inc diff {r['inc_median_diff']:.2f} deg vs random "
                f"{r['random_median_diff']:.2f} (ratio {r['ratio']:.3f}), class precision@10 {r['class_precision']:.3f}"
            )
        if o["anomalies"] > 0:
            report["anomalies"] = a = evaluate_anomalies(m, n=o["anomalies"], seed=o["anomaly_seed"], prevalence=o["prevalence"])
            self.stdout.write(
                f"anomalies ({a['n_anomalies']} of {a['n']}): AUROC {a['auroc']:.3f} (recon {a['auroc_recon_only']:.3f}, density "
                f"{a['auroc_density_only']:.3f}), top 10: {a['top10_anomalies']} anomalies; per kind "
                + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in a["per_kind"].items())
            )
        folder = Path(o["sdss"]) if o["sdss"] else Path(conf.SAMPLE_DATA) / "sdss"
        files = sorted(str(p) for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".fits", ".fit"))
        if files:
            report["real"] = d = evaluate_real(m, files, synthetic=o["domain_synthetic"])
            self.stdout.write(f"real cutouts ({d['files']} files): domain AUROC {d['domain_auroc']:.3f}")
        else:
            self.stderr.write(f"no images in {folder}: real-image figures skipped")
        if dims:
            base = TrainConfig(**{**card.get("train_config", {}), "real": [], "adapt_steps": 0})
            base = replace(
                base, images=o["sweep_images"], epochs=o["sweep_epochs"], threads=o["threads"], device=str(m.device), max_steps=None
            )
            with tempfile.TemporaryDirectory() as tmp:
                rows = sweep(
                    dims,
                    base,
                    o["sweep_dir"] or tmp,
                    test_n=o["sweep_test"],
                    anomaly_n=o["sweep_test"],
                    log=self.stderr.write,
                    calibration_n=o["sweep_calibration"],
                )
            report["sweep"] = {
                "rows": rows,
                "note": (
                    f"Each dimension trained from scratch for {o['sweep_epochs']} epochs on {o['sweep_images']} images (seed "
                    f"{base.seed}; beta {base.beta}, contrastive {base.contrastive}), shorter than the shipped model's training "
                    f"so that the sweep fits this 2-core CPU; scored on {o['sweep_test']} held-out images (retrieval seed "
                    f"{TEST_SEED}, anomaly seed {ANOMALY_SEED}); "
                    + (
                        f"each model's outlier score has its own artefact part (fit_latent_score's fit on {o['sweep_calibration']} "
                        "validation and calibration images)."
                        if o["sweep_calibration"] > 0
                        else "outlier scores of the latent parts alone."
                    )
                ),
            }
        md = report_markdown(report)
        if o["report"] != "-":
            path = Path(o["report"]) if o["report"] else directory / "EVALUATION.md"
            path.write_text(md)
            self.stderr.write(f"report -> {path}")
        else:
            self.stdout.write(md)
        if o["json"]:
            Path(o["json"]).write_text(json.dumps(report, indent=1, default=float))
