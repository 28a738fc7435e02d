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

from ml.columns import refresh_prediction_summary
from ml.conf import conf
from ml.models import ModelVersion, MorphologyPosterior, Prediction
from ml.weights_files import (
    LATENT_WEIGHTS_DIR,
    MORPH_WEIGHTS_DIR,
    WeightsChecksumError,
    checked_manifest,
    default_weights_dir,
    sha256_file,
)

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
    """Create or update the ModelVersion of a weights directory (ensemble.json + model card).
    The manifest's ``task`` (inclination unless it says morphology) decides which active version
    it replaces; latent models go to :func:`register_latent`."""
    directory = Path(directory)
    manifest_path = directory / "ensemble.json"
    manifest = checked_manifest(directory)
    if manifest.get("task") == ModelVersion.Task.LATENT:
        return register_latent(directory, activate=activate)
    card_path = directory / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    files = {m["file"]: m["sha256"] for m in manifest["members"]}
    sha = sha256_file(manifest_path)
    task = manifest.get("task", ModelVersion.Task.INCLINATION)
    td = card.get("training_data", {})
    if task == ModelVersion.Task.MORPHOLOGY:
        training_data = (
            f"{td.get('kind', '?')}: {td.get('images_per_kind', '?')} cutouts per model, sides {td.get('sizes')}, seeds {td.get('seeds')}"
        )
        metrics = {"validation": {m["kind"]: m.get("val_nll_calibrated") for m in card.get("members", [])}}
    else:
        training_data = (
            f"{td.get('kind', 'synthetic')}: {td.get('pool_images', '?')} images, seed {td.get('pool_seed', '?')}, "
            f"bag fraction {td.get('bag_fraction', '?')}"
            if td
            else ""
        )
        metrics = {"validation": card.get("ensemble_val", {}), "members": [m.get("val") for m in card.get("members", [])]}
    mv, _ = ModelVersion.objects.update_or_create(
        name=name or manifest.get("name", "inclinet-synth"),
        version=version or sha[:12],
        defaults=dict(
            task=task,
            architecture=manifest.get("architecture", "")[:300],
            training_data=training_data,
            metrics=metrics,
            weights_path=_relative(directory),
            sha256=sha,
            files=files,
            card=card,
        ),
    )
    if activate:
        ModelVersion.objects.filter(task=task).exclude(pk=mv.pk).update(active=False)
        ModelVersion.objects.filter(pk=mv.pk).update(active=True)
        mv.active = True
        refresh_prediction_summary()  # the CNN columns read the active model
    return mv


def active_version() -> ModelVersion:
    """The active inclination model version; registers the default ensemble (ml/weights, or
    $GALCAT_ML_WEIGHTS) when none is."""
    mv = ModelVersion.objects.filter(active=True, task=ModelVersion.Task.INCLINATION).order_by("-created").first()
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
    refresh_prediction_summary({p.galaxy_id for p in preds})
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
            refresh_prediction_summary({o.galaxy_id for o in objs})
            stored += len(objs)
        if progress is not None:
            progress(min(b0 + PREDICT_BATCH, len(ids)), len(ids))
    return {"stored": stored, "skipped": skipped}


def summarise_values(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    if not len(a):
        return {"mean": None, "median": None, "stdev": None}
    return {"mean": round(float(a.mean()), 2), "median": round(float(np.median(a)), 2), "stdev": round(float(a.std()), 2)}


def galaxy_summary(galaxy, mv: ModelVersion | None = None, images=None) -> dict | None:
    """CNN figures of a galaxy from its stored predictions (one version): per member (median over
    the galaxy's images, or over `images` only: those the viewer may see), summary, rejection
    likelihood and the axis-ratio baseline."""
    qs = Prediction.objects.filter(galaxy=galaxy)
    if images is not None:
        qs = qs.filter(image__in=images)
    if mv is None:
        mv = ModelVersion.objects.filter(active=True, task=ModelVersion.Task.INCLINATION).first()
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

    mv = mv or ModelVersion.objects.filter(active=True, task=ModelVersion.Task.INCLINATION).first()
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


# ---------------------------------------------------------------------------------------------
# Morphology posteriors (ml.morph networks): registry, storage, fitter start values, the panel
# ---------------------------------------------------------------------------------------------
def active_morph_version(register_default: bool = False) -> ModelVersion | None:
    """The active morphology version; with register_default, the shipped ml/weights/morph is
    registered and activated when none is active."""
    mv = ModelVersion.objects.filter(active=True, task=ModelVersion.Task.MORPHOLOGY).order_by("-created").first()
    if mv is None and register_default:
        mv = register_weights(MORPH_WEIGHTS_DIR)
    return mv


# ---------------------------------------------------------------------------------------------
# Latent model (ml.latent VAE): the registry entry; embeddings and searches are in ml.latent_services
# ---------------------------------------------------------------------------------------------
@transaction.atomic
def register_latent(directory: str | Path | None = None, *, activate: bool = True) -> ModelVersion:
    """Create or update the ModelVersion of a latent-model weights directory (default
    ml/weights/latent), loaded through ml.latent.load_latent, which refuses files whose sha256
    differ from its manifest (ensemble.json): name, version, sha256 and embedding dimension from
    the model, the manifest's file checksums, the model card (model_card.json). The version's HNSW index is created; with
    activate, it replaces the active latent version."""
    from ml.latent import load_latent
    from ml.vectors import ensure_hnsw_index

    directory = Path(directory) if directory is not None else LATENT_WEIGHTS_DIR
    model = load_latent(directory=directory, device="cpu")
    card_path = directory / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    td = card.get("training_data", "")
    mv, _ = ModelVersion.objects.update_or_create(
        name=model.name,
        version=str(model.version),
        defaults=dict(
            task=ModelVersion.Task.LATENT,
            architecture=str(card.get("architecture") or f"convolutional VAE, {model.dim}-d latent, {model.channels} channel(s)")[:300],
            training_data=td if isinstance(td, str) else json.dumps(td, sort_keys=True),
            metrics=card.get("metrics", {}),
            weights_path=_relative(directory),
            sha256=model.sha256,
            files={m["file"]: m["sha256"] for m in model.manifest["members"]},
            card=card,
            embedding_dim=int(model.dim),
        ),
    )
    ensure_hnsw_index(mv.pk, mv.embedding_dim, m=int(conf.LATENT_HNSW_M), ef_construction=int(conf.LATENT_HNSW_EF_CONSTRUCTION))
    if activate:
        ModelVersion.objects.filter(task=ModelVersion.Task.LATENT).exclude(pk=mv.pk).update(active=False)
        ModelVersion.objects.filter(pk=mv.pk).update(active=True)
        mv.active = True
    return mv


def active_latent_version(register_default: bool = False) -> ModelVersion | None:
    """The active latent version; with register_default, the shipped ml/weights/latent is
    registered and activated when none is active (and the directory holds a model)."""
    mv = ModelVersion.objects.filter(active=True, task=ModelVersion.Task.LATENT).order_by("-created").first()
    if mv is None and register_default and LATENT_WEIGHTS_DIR.is_dir():
        mv = register_latent(LATENT_WEIGHTS_DIR)
    return mv


_MORPH_NETS: dict[tuple[int, str], dict] = {}


def morph_nets_for(mv: ModelVersion) -> dict:
    """{kind: network} of a morphology version (loaded once per process), refusing files whose
    sha256 differ from the version's."""
    key = (mv.pk, mv.sha256)
    if key not in _MORPH_NETS:
        d = weights_dir(mv)
        got = sha256_file(d / "ensemble.json")
        if got != mv.sha256:
            raise WeightsChecksumError(f"{d / 'ensemble.json'}: sha256 {got} differs from model version {mv}'s {mv.sha256}")
        from ml.morph.posterior import load_nets

        _MORPH_NETS[key] = load_nets(d, expected_sha256=mv.files)
    return _MORPH_NETS[key]


def _morph_rows(image, mv: ModelVersion, kind: str, post: dict, k: int, prep) -> MorphologyPosterior:
    from ml.morph.posterior import histograms

    names = post["names"]

    def per(key: str) -> dict:
        return {n: float(v) for n, v in zip(names, post[key][k], strict=True)}

    med = per("median")
    std = per("std")
    scale = float(prep.scale)
    re_name = "re" if kind == "sersic" else "re_disk"
    return MorphologyPosterior(
        image=image,
        galaxy_id=image.galaxy_id,
        model_version=mv,
        kind=kind,
        names=names,
        median=med,
        mode=per("mode"),
        mean=per("mean"),
        std=std,
        intervals={
            n: [[float(post["lo"][k, j, i]), float(post["hi"][k, j, i])] for i in range(post["lo"].shape[-1])] for j, n in enumerate(names)
        },
        target_mean=[float(v) for v in post["mean_t"][k]],
        target_covariance=np.asarray(post["cov_t"][k], dtype=float).tolist(),
        histograms=histograms(post["samples"][k]),
        passes=int(post["passes"]),
        draws=int(post["draws"]),
        zoom=float(post["zoom"][k]),
        psf_fwhm=float(conf.MORPH_PSF_FWHM),
        scale=scale,
        re=med[re_name] * scale,
        re_err=std[re_name] * scale,
        n=med.get("n"),
        q=med.get("q", med.get("q_disk")),
        bt=med.get("bt"),
    )


def morph_and_store(image_ids: list[int], mv: ModelVersion | None = None, *, passes: int | None = None, progress=None) -> dict:
    """Posteriors of catalog images by every network of a morphology version; one
    MorphologyPosterior per (image, version, model kind), re-runs update it. The pixels are those
    the fitter sees (fitting.services.prepare_image); unreadable images are skipped and counted."""
    from catalog.models import Image
    from fitting.services import FitInputError, prepare_image
    from ml.morph.posterior import posterior

    mv = mv or active_morph_version(register_default=True)
    nets = morph_nets_for(mv)
    passes = int(conf.MORPH_PASSES) if passes is None else passes
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    stored = skipped = 0
    for b0 in range(0, len(ids), PREDICT_BATCH):
        groups: dict[tuple, list] = {}
        for im in Image.objects.filter(pk__in=ids[b0 : b0 + PREDICT_BATCH]):
            try:
                prep = prepare_image(im)
            except FitInputError:
                skipped += 1
                continue
            groups.setdefault(prep.data.shape, []).append((im, prep))
        rows = []
        for group in groups.values():
            data = np.stack([p.data for _, p in group])
            noise = np.array([float(np.median(p.sigma)) for _, p in group])
            for kind, net in nets.items():
                post = posterior(
                    net, data, noise, float(conf.MORPH_PSF_FWHM), passes=passes, draws=int(conf.MORPH_DRAWS), keep_samples=True
                )
                rows += [_morph_rows(im, mv, kind, post, k, prep) for k, (im, prep) in enumerate(group)]
        update = [f.name for f in MorphologyPosterior._meta.concrete_fields if f.name not in ("id", "image", "model_version", "kind")]
        MorphologyPosterior.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["image", "model_version", "kind"], update_fields=update
        )
        stored += len(rows)
        if progress is not None:
            progress(min(b0 + PREDICT_BATCH, len(ids)), len(ids))
    return {"stored": stored, "skipped": skipped, "model_version": mv.pk}


def morph_initial_values(data: list[np.ndarray], sigma: list[np.ndarray], model_kind: str) -> np.ndarray | None:
    """Start values of the fitter (GALCAT_FIT_INIT) from the active morphology version's network:
    [B, P] in fitting.engine.lm.physical_names order, sky 0; None when no morphology version is
    active or it has no network for this model (the fitter then starts from image moments)."""
    mv = active_morph_version()
    if mv is None:
        return None
    nets = morph_nets_for(mv)
    if model_kind not in nets:
        return None
    from ml.morph.evaluate import init_from_net
    from ml.morph.posterior import posterior

    out = np.empty((len(data), 8 if model_kind == "sersic" else 13))
    shapes: dict[tuple, list[int]] = {}
    for i, arr in enumerate(data):
        shapes.setdefault(arr.shape, []).append(i)
    for idx in shapes.values():
        noise = np.array([float(np.median(sigma[i])) for i in idx])
        post = posterior(nets[model_kind], np.stack([data[i] for i in idx]), noise, float(conf.MORPH_PSF_FWHM), draws=200)
        out[idx] = init_from_net(model_kind, post["median"]).numpy()
    return out


def morph_summary(galaxy, mv: ModelVersion | None = None, images=None) -> dict | None:
    """The galaxy's stored posteriors of the active (or given) morphology version, with the
    current engine's LM fits of the same images beside them (for the panel and its plots)."""
    from fitting.services import fits_for_galaxy

    mv = mv or active_morph_version()
    if mv is None:
        return None
    qs = MorphologyPosterior.objects.filter(galaxy=galaxy, model_version=mv)
    if images is not None:  # only the images the viewer may see
        qs = qs.filter(image__in=images)
    rows = list(qs.select_related("image").order_by("image__band", "-kind"))
    if not rows:
        return None
    fits = {(f.image_id, f.model_kind): f for f in fits_for_galaxy(galaxy)}
    plots = []
    for r in rows:
        fit = fits.get((r.image_id, r.kind))
        lm = _lm_intervals(r.kind, fit, r.names) if fit is not None and fit.converged else {}
        plots.append(
            {
                "id": f"morph-{r.pk}",
                "label": f"{r.image.band} {r.get_kind_display()}",
                "names": r.names,
                "histograms": r.histograms,
                "median": r.median,
                "lm": lm,
            }
        )
    return {"model_version": mv, "rows": rows, "plots": plots}


#: The engine's physical parameter names (fitting.engine.lm.physical_names), spelled out so that
#: the galaxy page does not import torch.
_FIT_NAMES = {
    "sersic": ["x0", "y0", "sky", "flux", "re", "n", "q", "theta"],
    "bulge_disk": ["x0", "y0", "sky"] + [f"{c}.{k}" for c in ("bulge", "disk") for k in ("flux", "re", "n", "q", "theta")],
}


def _lm_intervals(kind: str, fit, columns: list[str]) -> dict:
    """{name: [value, error]} of a stored LM fit in the network's columns (delta rule for the
    bulge+disk total flux and B/T; numpy only, so the page does not import torch)."""
    names = _FIT_NAMES[kind]
    if any(fit.params.get(k) is None for k in names) or not fit.covariance:
        return {}
    p = np.array([fit.params[k] for k in names], dtype=float)
    cov = np.array([[np.nan if v is None else v for v in row] for row in fit.covariance], dtype=float)
    g = np.zeros((len(columns), len(names)))
    if kind == "sersic":
        for j, i in enumerate((0, 1, 3, 4, 5, 6, 7)):
            g[j, i] = 1.0
        vals = p[[0, 1, 3, 4, 5, 6, 7]]
    else:
        fb, fd = p[3], p[8]
        tot = fb + fd
        vals = np.array([p[0], p[1], tot, fb / tot, p[9], p[4], p[11], p[12]])
        for j, i in ((0, 0), (1, 1), (4, 9), (5, 4), (6, 11), (7, 12)):
            g[j, i] = 1.0
        g[2, 3] = g[2, 8] = 1.0
        g[3, 3], g[3, 8] = fd / tot**2, -fb / tot**2
    err = np.sqrt(np.clip(np.diagonal(g @ np.nan_to_num(cov) @ g.T), 0.0, None))
    return {n: [float(vals[j]), float(err[j])] for j, n in enumerate(columns)}
