"""Writes and reads of the ml app: the model registry, stored predictions, the panel's figures.

Views, API, commands and tasks call these functions; they hold the logic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db import transaction

from ml.conf import conf
from ml.models import ModelVersion, Prediction
from ml.weights_files import WeightsChecksumError, checked_manifest, default_weights_dir, sha256_file

if TYPE_CHECKING:
    from ml.inference import Ensemble

PREDICT_BATCH = 64


def q0() -> float:
    """Intrinsic axis ratio of the baseline (GALCAT_Q0, default 0.3)."""
    return float(conf.Q0)


def _relative(path: Path) -> str:
    base = Path(settings.BASE_DIR).resolve()
    p = Path(path).resolve()
    try:
        return str(p.relative_to(base))
    except ValueError:
        return str(p)


def weights_dir(mv: ModelVersion) -> Path:
    p = Path(mv.weights_path)
    return p if p.is_absolute() else Path(settings.BASE_DIR) / p


@transaction.atomic
def register_weights(directory: str | Path, *, name: str | None = None, version: str | None = None, activate: bool = True) -> ModelVersion:
    """Create or update the ModelVersion of a weights directory (ensemble.json + model card)."""
    directory = Path(directory)
    manifest_path = directory / "ensemble.json"
    manifest = checked_manifest(directory)
    card_path = directory / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    files = {m["file"]: m["sha256"] for m in manifest["members"]}
    sha = sha256_file(manifest_path)
    td = card.get("training_data", {})
    mv, _ = ModelVersion.objects.update_or_create(
        name=name or manifest.get("name", "inclinet-synth"),
        version=version or sha[:12],
        defaults=dict(
            architecture=manifest.get("architecture", "")[:300],
            training_data=(
                f"{td.get('kind', 'synthetic')}: {td.get('pool_images', '?')} images, seed {td.get('pool_seed', '?')}, "
                f"bag fraction {td.get('bag_fraction', '?')}"
                if td
                else ""
            ),
            metrics={"validation": card.get("ensemble_val", {}), "members": [m.get("val") for m in card.get("members", [])]},
            weights_path=_relative(directory),
            sha256=sha,
            files=files,
            card=card,
        ),
    )
    if activate:
        ModelVersion.objects.exclude(pk=mv.pk).update(active=False)
        ModelVersion.objects.filter(pk=mv.pk).update(active=True)
        mv.active = True
    return mv


def active_version() -> ModelVersion:
    """The active model version; registers the default ensemble (ml/weights, or
    $GALCAT_ML_WEIGHTS) when none is."""
    mv = ModelVersion.objects.filter(active=True).order_by("-created").first()
    if mv is None:
        mv = register_weights(default_weights_dir())
    return mv


_ENSEMBLES: dict[tuple[int, str], Ensemble] = {}


def ensemble_for(mv: ModelVersion) -> Ensemble:
    """Load (once per process) the ensemble of a version, refusing files whose sha256 differ."""
    key = (mv.pk, mv.sha256)
    if key not in _ENSEMBLES:
        d = weights_dir(mv)
        got = sha256_file(d / "ensemble.json")
        if got != mv.sha256:
            raise WeightsChecksumError(f"{d / 'ensemble.json'}: sha256 {got} differs from model version {mv}'s {mv.sha256}")
        from ml.inference import Ensemble  # torch is imported only when a prediction is made

        _ENSEMBLES[key] = Ensemble.load(d, expected_sha256=mv.files, compile=bool(conf.ML_COMPILE))
    return _ENSEMBLES[key]


def read_image_field(image) -> np.ndarray:
    """Pixels of a catalog Image."""
    from ml.preprocess import load_image_bytes

    with image.file.open("rb") as fh:
        data = fh.read()
    return load_image_bytes(data, image.file.name)


#: Fitted axis ratios preferred for the baseline, best first: the disk of a bulge+disk fit is the
#: disk's own b/a; a single Sérsic's b/a mixes in a rounder bulge.
FIT_KIND_PREFERENCE = ("bulge_disk", "sersic")


def fitted_axis_ratios(image_ids: list[int]) -> dict[int, tuple[float, str]]:
    """{image id: (q, 'fit:<kind>')} from converged profile fits with a finite b/a (the preferred
    model kind, then the newest fit), for the images that have one."""
    from fitting.models import FitResult

    best: dict[int, tuple[int, object, float, str]] = {}
    rows = FitResult.objects.filter(image_id__in=list(image_ids), converged=True, q__isnull=False).values_list(
        "image_id", "model_kind", "q", "updated"
    )
    for image_id, kind, q, updated in rows:
        if not (0.0 < q <= 1.0):
            continue
        rank = FIT_KIND_PREFERENCE.index(kind) if kind in FIT_KIND_PREFERENCE else len(FIT_KIND_PREFERENCE)
        cur = best.get(image_id)
        if cur is None or (rank, -updated.timestamp()) < (cur[0], -cur[1].timestamp()):
            best[image_id] = (rank, updated, float(q), f"fit:{kind}")
    return {i: (v[2], v[3]) for i, v in best.items()}


def refresh_axis_ratios(image_ids: list[int]) -> int:
    """Put the fitted b/a (where there is one) into the stored predictions of these images, with the
    axis-ratio inclination for the current q0; returns the number of predictions changed. Called
    after new fits are stored, so the baseline beside the CNN values follows the best measurement."""
    fitted = fitted_axis_ratios(image_ids)
    if not fitted:
        return 0
    preds = list(Prediction.objects.filter(image_id__in=list(fitted)))
    from ml.inference import axis_ratio_inclination

    for p in preds:
        q, source = fitted[p.image_id]
        p.axis_ratio = q
        p.axis_ratio_inc = float(axis_ratio_inclination(q, q0()))
        p.extra = {**(p.extra or {}), "axis_ratio_source": source, "q0": q0()}
    Prediction.objects.bulk_update(preds, ["axis_ratio", "axis_ratio_inc", "extra"])
    return len(preds)


def predict_and_store(image_ids: list[int], mv: ModelVersion | None = None, progress=None) -> dict:
    """Predict the given catalog images with a model version and upsert one Prediction each.

    Images that cannot be read are skipped and counted. progress(done, total) is called per batch.
    """
    from catalog.models import Image

    mv = mv or active_version()
    ens = ensemble_for(mv)
    ids = list(image_ids)
    stored = skipped = 0
    for b0 in range(0, len(ids), PREDICT_BATCH):
        batch = list(Image.objects.filter(pk__in=ids[b0 : b0 + PREDICT_BATCH]))
        arrays, rows = [], []
        for im in batch:
            try:
                arrays.append(read_image_field(im))
                rows.append(im)
            except (ValueError, OSError):
                skipped += 1
        if rows:
            res = ens.predict_images(arrays)
            fitted = fitted_axis_ratios([im.pk for im in rows])
            objs = []
            for k, im in enumerate(rows):
                from ml.inference import axis_ratio_from_moments, axis_ratio_inclination

                # the baseline's b/a: from a converged profile fit when there is one, else moments
                q, source = fitted.get(im.pk, (axis_ratio_from_moments(arrays[k]), "moments"))
                qinc = float(axis_ratio_inclination(q, q0())) if np.isfinite(q) else None
                objs.append(
                    Prediction(
                        image=im,
                        galaxy_id=im.galaxy_id,
                        model_version=mv,
                        value=float(res["median"][k]),
                        uncertainty=float(res["std"][k]),
                        reject_likelihood=float(res["reject_likelihood"][k]),
                        axis_ratio=q if np.isfinite(q) else None,
                        axis_ratio_inc=qinc,
                        extra={
                            "members": dict(zip(ens.names, [round(float(v), 3) for v in res["per_member"][k]], strict=True)),
                            "mean": float(res["mean"][k]),
                            "reject_likelihood": float(res["reject_likelihood"][k]),
                            "sigma_model": float(res["sigma_model"][k]),
                            "q0": q0(),
                            "axis_ratio_source": source,
                        },
                    )
                )
            Prediction.objects.bulk_create(
                objs,
                update_conflicts=True,
                unique_fields=["image", "model_version"],
                update_fields=["value", "uncertainty", "reject_likelihood", "axis_ratio", "axis_ratio_inc", "extra", "galaxy", "created"],
            )
            stored += len(objs)
        if progress is not None:
            progress(min(b0 + PREDICT_BATCH, len(ids)), len(ids))
    return {"stored": stored, "skipped": skipped}


def summarise_values(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    if not len(a):
        return {"mean": None, "median": None, "stdev": None}
    return {"mean": round(float(a.mean()), 2), "median": round(float(np.median(a)), 2), "stdev": round(float(a.std()), 2)}


def galaxy_summary(galaxy, mv: ModelVersion | None = None) -> dict | None:
    """CNN figures of a galaxy from its stored predictions (one version): per member (median over
    the galaxy's images), summary, rejection likelihood and the axis-ratio baseline."""
    qs = Prediction.objects.filter(galaxy=galaxy)
    if mv is None:
        mv = ModelVersion.objects.filter(active=True).first()
    if mv is not None:
        qs = qs.filter(model_version=mv)
    preds = list(qs.select_related("model_version", "image"))
    if not preds:
        return None
    mv = preds[0].model_version
    names = list(preds[0].extra.get("members", {}).keys())
    members = {n: round(float(np.median([p.extra["members"][n] for p in preds if n in p.extra.get("members", {})])), 2) for n in names}
    baseline = [p.axis_ratio_inc for p in preds if p.axis_ratio_inc is not None]
    q = [p.axis_ratio for p in preds if p.axis_ratio is not None]
    return {
        "model_version": mv,
        "predictions": preds,
        "members": members,
        "summary": summarise_values([p.value for p in preds]),
        "rejection_likelihood": round(float(np.mean([p.reject_likelihood for p in preds])), 3),
        "baseline": {
            "q": round(float(np.median(q)), 3) if q else None,
            "inc": round(float(np.median(baseline)), 2) if baseline else None,
            "q0": q0(),
        },
    }


#: Most galaxies drawn on the comparison page (the plots stay responsive).
COMPARE_LIMIT = 20000


def comparison_rows(mv: ModelVersion | None = None, limit: int = COMPARE_LIMIT) -> dict:
    """Columns for the comparison plots, one entry per galaxy with a prediction of the version:
    pgc, cnn (mean over images), axis_ratio (baseline inc), consensus (accepted), published."""
    from django.db.models import Avg

    from catalog.models import Galaxy
    from zoo.models import ConsensusInclination

    mv = mv or ModelVersion.objects.filter(active=True).first()
    out: dict = {"pgc": [], "cnn": [], "axis_ratio": [], "consensus": [], "published": [], "q0": q0(), "model": str(mv) if mv else ""}
    if mv is None:
        return out
    agg = list(
        Prediction.objects.filter(model_version=mv)
        .values("galaxy_id")
        .annotate(cnn=Avg("value"), base=Avg("axis_ratio_inc"))
        .order_by("galaxy_id")[:limit]
    )
    pgcs = [a["galaxy_id"] for a in agg]
    cons: dict[int, float] = {}
    for c in ConsensusInclination.objects.filter(galaxy_id__in=pgcs, flag="A").order_by("galaxy_id", "-computed"):
        cons.setdefault(c.galaxy_id, c.inc)
    published = dict(Galaxy.objects.filter(pk__in=pgcs).values_list("pk", "inc"))
    for a in agg:
        g = a["galaxy_id"]
        out["pgc"].append(g)
        out["cnn"].append(round(a["cnn"], 2))
        out["axis_ratio"].append(round(a["base"], 2) if a["base"] is not None else None)
        out["consensus"].append(cons.get(g))
        out["published"].append(published.get(g))
    return out
