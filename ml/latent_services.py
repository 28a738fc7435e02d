"""The latent space of the catalog's images: embeddings in pgvector, similar galaxies, outliers,
the latent map and curators' verdicts.

The numbers come from ml.latent (pure PyTorch, no Django); this module stores and searches them.
Every read takes the viewer: only images that catalog.selectors.visible_images lets them see are
searched, listed or drawn. Views, API, tasks and commands call these functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
from django.db import connection, models
from django.db.models.functions import Cast
from pgvector.django import CosineDistance, VectorField

from catalog.models import Galaxy, Image
from catalog.selectors import visible_images
from core.roles import is_curator
from ml.conf import conf
from ml.models import ImageEmbedding, LatentDensity, ModelVersion, OutlierVerdict
from ml.services import PREDICT_BATCH, active_latent_version, read_image_field, weights_dir
from ml.vectors import set_ef_search

if TYPE_CHECKING:
    from ml.latent import LatentModel

#: Most candidates one HNSW scan returns (pgvector caps hnsw.ef_search at 1000).
MAX_CANDIDATES = 1000
#: Rows per chunk when the sweep reads or rescores all embeddings.
SWEEP_CHUNK = 5000


class LatentUnavailable(RuntimeError):
    """No latent model version is active (none shipped or registered yet)."""


def _require_version(mv: ModelVersion | None = None) -> ModelVersion:
    mv = mv or active_latent_version(register_default=True)
    if mv is None:
        raise LatentUnavailable("no latent model is registered: train one (manage.py train_latent) or ship ml/weights/latent")
    return mv


# ---------------------------------------------------------------------------------------------
# The model of a version, with the newest refit of its density
# ---------------------------------------------------------------------------------------------
_MODELS: dict[tuple[int, str, int | None], LatentModel] = {}


def latent_model_for(mv: ModelVersion) -> LatentModel:
    """The LatentModel of a version (loaded once per process; ml.latent refuses files whose sha256
    differ), with the newest stored density refit loaded into it (the shipped fit before the first)."""
    density = LatentDensity.objects.filter(model_version=mv).order_by("-created", "-pk").values_list("pk", flat=True).first()
    key = (mv.pk, mv.sha256, density)
    if key not in _MODELS:
        from ml.latent import load_latent

        model = load_latent(directory=weights_dir(mv), expected_sha256=mv.files)  # CUDA when the process has it
        if model.sha256 != mv.sha256:
            from ml.weights_files import WeightsChecksumError

            raise WeightsChecksumError(f"{weights_dir(mv)}: sha256 {model.sha256} differs from model version {mv}'s {mv.sha256}")
        if density is not None:
            model.load_density_state(LatentDensity.objects.get(pk=density).state)
        for old in [k for k in _MODELS if k[0] == mv.pk]:
            del _MODELS[old]
        _MODELS[key] = model
    return _MODELS[key]


# ---------------------------------------------------------------------------------------------
# Writes: embeddings of catalog images, the nightly sweep
# ---------------------------------------------------------------------------------------------
def _rows(images: list[Image], mv: ModelVersion, out: dict, xy: np.ndarray) -> list[ImageEmbedding]:
    return [
        ImageEmbedding(
            image=im,
            galaxy_id=im.galaxy_id,
            model_version=mv,
            embedding=out["embedding"][j].astype(np.float32),
            recon_error=float(out["recon_error"][j]),
            outlier_score=float(out["outlier"][j]),
            artefact_score=float(out["artefact"][j]),
            map_x=float(xy[j, 0]),
            map_y=float(xy[j, 1]),
        )
        for j, im in enumerate(images)
    ]


def embed_and_store(image_ids: Iterable[int], mv: ModelVersion | None = None, *, progress: Callable | None = None) -> dict:
    """Embeddings of catalog images by the active (or given) latent version: one ImageEmbedding per
    image and version (re-runs update it), with reconstruction error, outlier score and map place.
    Unreadable images are skipped and counted."""
    mv = _require_version(mv)
    model = latent_model_for(mv)
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    stored = skipped = 0
    update = ["galaxy", "embedding", "recon_error", "outlier_score", "artefact_score", "map_x", "map_y", "created"]
    for b0 in range(0, len(ids), PREDICT_BATCH):
        images, pixels = [], []
        for im in Image.objects.filter(pk__in=ids[b0 : b0 + PREDICT_BATCH]):
            try:
                pixels.append(read_image_field(im))
            except (OSError, ValueError):
                skipped += 1
                continue
            images.append(im)
        if images:
            out = model.encode_all(pixels)
            rows = _rows(images, mv, out, model.project2d(out["embedding"]))
            ImageEmbedding.objects.bulk_create(rows, update_conflicts=True, unique_fields=["image", "model_version"], update_fields=update)
            stored += len(rows)
        if progress is not None:
            progress(min(b0 + PREDICT_BATCH, len(ids)), len(ids))
    return {"stored": stored, "skipped": skipped, "model_version": mv.pk}


def missing_image_ids(mv: ModelVersion) -> list[int]:
    """Images without an embedding by the version."""
    done = ImageEmbedding.objects.filter(model_version=mv).values("image_id")
    return list(Image.objects.exclude(pk__in=done).order_by("pk").values_list("pk", flat=True))


def refit_density(mv: ModelVersion | None = None, *, progress: Callable | None = None) -> dict:
    """Refit the version's density/outlier model on all its stored embeddings, store the fit
    (LatentDensity) and rescore every embedding (outlier score and map place) with it; each
    image's artefact part (ml.latent.artefacts, not refitted) is kept as stored."""
    mv = _require_version(mv)
    model = latent_model_for(mv)
    qs = ImageEmbedding.objects.filter(model_version=mv).order_by("pk")
    pks = list(qs.values_list("pk", flat=True))
    if not pks:
        return {"images": 0, "model_version": mv.pk}
    emb, err, art = [], [], []
    for c0 in range(0, len(pks), SWEEP_CHUNK):
        for vec, e, a in qs.filter(pk__in=pks[c0 : c0 + SWEEP_CHUNK]).values_list("embedding", "recon_error", "artefact_score"):
            emb.append(np.asarray(vec, dtype=np.float32))
            err.append(e)
            art.append(a)
    emb_a, err_a, artefact = np.stack(emb), np.asarray(err, dtype=np.float32), np.asarray(art, dtype=np.float64)
    try:
        model.refit_density(emb_a, err_a, note=f"catalog sweep, {len(pks)} embeddings")
    except ValueError as exc:  # too few embeddings: the shipped (or last) fit stays
        return {"images": len(pks), "model_version": mv.pk, "refit": False, "message": str(exc)}
    LatentDensity.objects.create(model_version=mv, state=model.density_state(), images=len(pks))
    model = latent_model_for(mv)  # the new fit, as every process will load it
    scores = np.asarray(model.score_embeddings(emb_a, err_a, artefact), dtype=float)
    xy = np.asarray(model.project2d(emb_a), dtype=float)
    for c0 in range(0, len(pks), SWEEP_CHUNK):
        chunk = [
            ImageEmbedding(pk=pk, outlier_score=float(scores[c0 + j]), map_x=float(xy[c0 + j, 0]), map_y=float(xy[c0 + j, 1]))
            for j, pk in enumerate(pks[c0 : c0 + SWEEP_CHUNK])
        ]
        ImageEmbedding.objects.bulk_update(chunk, ["outlier_score", "map_x", "map_y"])
        if progress is not None:
            progress(min(c0 + SWEEP_CHUNK, len(pks)), len(pks))
    return {"images": len(pks), "model_version": mv.pk, "refit": True}


def latent_sweep(progress: Callable | None = None) -> dict:
    """Nightly: embed every image the active latent version has not embedded, then refit its
    density/outlier model on all embeddings and rescore them. Nothing to do without a version."""
    mv = active_latent_version(register_default=True)
    if mv is None:
        return {"embedded": 0, "refit": False, "images": 0, "message": "no latent model"}
    out = embed_and_store(missing_image_ids(mv), mv, progress=progress)
    fit = refit_density(mv, progress=progress)
    return {
        "embedded": out["stored"],
        "skipped": out["skipped"],
        "refit": fit.get("refit", False),
        "images": fit["images"],
        "model_version": mv.pk,
    }


# ---------------------------------------------------------------------------------------------
# Nearest neighbours through the HNSW index
# ---------------------------------------------------------------------------------------------
def nearest(
    vector: np.ndarray,
    model_version_id: int,
    dim: int,
    *,
    limit: int,
    ef_search: int | None = None,
    model: type[models.Model] = ImageEmbedding,
) -> list[tuple[int, int, float]]:
    """The `limit` stored embeddings of a version nearest to `vector` by cosine distance, through
    the version's HNSW index (approximate; hnsw.ef_search = max(GALCAT_LATENT_EF_SEARCH, limit)):
    [(image id, galaxy id, distance)], nearest first. `model`: a table of the same columns
    (bench/latent_bench.py)."""
    ef = max(int(conf.LATENT_EF_SEARCH if ef_search is None else ef_search), int(limit))
    distance = CosineDistance(Cast("embedding", VectorField(dimensions=int(dim))), np.asarray(vector, dtype=np.float32))
    qs = model.objects.filter(model_version_id=model_version_id).annotate(distance=distance).order_by("distance")
    set_ef_search(connection, min(ef, MAX_CANDIDATES))
    return [(i, g, float(d)) for i, g, d in qs.values_list("image_id", "galaxy_id", "distance")[: int(limit)]]


def _separation_arcsec(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Angular separations [arcsec] of (ra, dec) [deg] from (ra0, dec0) (haversine)."""
    r0, d0, r, d = map(np.radians, (ra0, dec0, ra, dec))
    h = np.sin((d - d0) / 2) ** 2 + np.cos(d0) * np.cos(d) * np.sin((r - r0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))) * 3600.0


def _neighbours(
    vector: np.ndarray, mv: ModelVersion, user, k: int, *, exclude_pgc: int | None = None, centre: tuple[float, float] | None = None
) -> list[dict]:
    """The k galaxies nearest to `vector` (one entry per galaxy: its nearest visible image), among
    images `user` may see; without the galaxy exclude_pgc and galaxies closer than
    GALCAT_LATENT_EXCLUDE_ARCSEC to `centre` (ra, dec). The index is asked for more candidates
    until k are left or it has no more."""
    k = max(1, min(int(k), int(conf.LATENT_MAX_K)))
    limit = 4 * k + 20
    radius = float(conf.LATENT_EXCLUDE_ARCSEC)
    while True:
        cands = nearest(vector, mv.pk, mv.embedding_dim, limit=limit)
        visible = set(visible_images(user).filter(pk__in=[c[0] for c in cands]).values_list("pk", flat=True))
        pgcs = {g for _, g, _ in cands if g != exclude_pgc}
        pos = {p: (ra, dec) for p, ra, dec in Galaxy.objects.filter(pk__in=pgcs).values_list("pgc", "ra", "dec")}
        out: dict[int, dict] = {}
        for image_id, pgc, dist in cands:
            if image_id not in visible or pgc == exclude_pgc or pgc in out:
                continue
            ra, dec = pos.get(pgc, (None, None))
            if centre is not None and ra is not None and dec is not None:
                if _separation_arcsec(centre[0], centre[1], np.array([ra]), np.array([dec]))[0] < radius:
                    continue
            out[pgc] = {"pgc": pgc, "image_id": image_id, "distance": dist, "ra": ra, "dec": dec}
        if len(out) >= k or len(cands) < limit or limit >= MAX_CANDIDATES:
            break
        limit = min(2 * limit, MAX_CANDIDATES)
    rows = list(out.values())[:k]
    images = Image.objects.in_bulk([r["image_id"] for r in rows])
    for r in rows:
        im = images[r["image_id"]]
        r["band"] = im.band
        r["image_url"] = im.file.url
    return rows


def galaxy_vector(pgc: int, user, mv: ModelVersion) -> np.ndarray | None:
    """The galaxy's direction in latent space: the normalised mean of the embeddings of its images
    that `user` may see (None when it has none)."""
    vecs = list(
        ImageEmbedding.objects.filter(galaxy_id=pgc, model_version=mv, image__in=visible_images(user)).values_list("embedding", flat=True)
    )
    if not vecs:
        return None
    v = np.mean(np.stack([np.asarray(x, dtype=np.float64) for x in vecs]), axis=0)
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else v).astype(np.float32)


def similar(pgc: int, k: int, user, mv: ModelVersion | None = None) -> dict:
    """The k galaxies most similar to galaxy `pgc` (cosine distance of the galaxy's direction in
    latent space to their images), without the galaxy itself and galaxies closer than
    GALCAT_LATENT_EXCLUDE_ARCSEC on the sky; only images `user` may see, on both sides.
    {"pgc", "model_version", "neighbours": [{pgc, image_id, distance, ra, dec, band, image_url}]};
    neighbours is empty when the galaxy has no visible embedded image. Galaxy.DoesNotExist for an
    unknown pgc."""
    mv = _require_version(mv)
    galaxy = Galaxy.objects.get(pk=pgc)
    vec = galaxy_vector(pgc, user, mv)
    centre = (galaxy.ra, galaxy.dec) if galaxy.ra is not None and galaxy.dec is not None else None
    rows = [] if vec is None else _neighbours(vec, mv, user, k, exclude_pgc=pgc, centre=centre)
    return {"pgc": pgc, "model_version": mv, "neighbours": rows}


def similar_to_image(image: np.ndarray, k: int, user, mv: ModelVersion | None = None, *, run: Callable | None = None) -> dict:
    """ "More like this": the k catalog galaxies nearest to an uploaded image (decoded pixels as
    ml.preprocess.load_image_bytes gives them), among images `user` may see; an image stored in
    the catalog finds itself at distance 0. run(fn, *args): how the network is called (the API's
    bounded pool; the database is read in the calling thread). {"model_version", "outlier_score",
    "neighbours"}."""
    mv = _require_version(mv)
    model = latent_model_for(mv)
    out = (run or (lambda fn, *args: fn(*args)))(model.encode_all, [image])
    rows = _neighbours(np.asarray(out["embedding"][0], dtype=np.float32), mv, user, k)
    return {"model_version": mv, "outlier_score": float(out["outlier"][0]), "neighbours": rows}


# ---------------------------------------------------------------------------------------------
# Outliers, verdicts, the map
# ---------------------------------------------------------------------------------------------
def latest_verdicts(image_ids: Iterable[int]) -> dict[int, OutlierVerdict]:
    """{image id: newest verdict} for the images that have one."""
    out: dict[int, OutlierVerdict] = {}
    for v in OutlierVerdict.objects.filter(image_id__in=list(image_ids)).select_related("user").order_by("image_id", "-created", "-pk"):
        out.setdefault(v.image_id, v)
    return out


def outliers(user, *, limit: int = 50, offset: int = 0, unreviewed: bool = False, mv: ModelVersion | None = None) -> dict:
    """The most unusual images `user` may see, highest outlier score first: {"model_version",
    "rows": [{embedding, image, galaxy_id, verdict}], "total"}; unreviewed: only images without
    a verdict."""
    mv = _require_version(mv)
    qs = ImageEmbedding.objects.filter(model_version=mv, image__in=visible_images(user))
    if unreviewed:
        qs = qs.exclude(image__outlier_verdicts__isnull=False)
    total = qs.count()
    page = list(qs.select_related("image").order_by("-outlier_score", "pk")[offset : offset + limit])
    verdicts = latest_verdicts(e.image_id for e in page)
    rows = [{"embedding": e, "image": e.image, "galaxy_id": e.galaxy_id, "verdict": verdicts.get(e.image_id)} for e in page]
    return {"model_version": mv, "rows": rows, "total": total}


class VerdictError(ValueError):
    """A verdict was refused (not a curator, unknown image or verdict)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def record_verdict(image_id: int, verdict: str, user, note: str = "") -> OutlierVerdict:
    """Store a curator's verdict (interesting / artefact / normal) on an image; append-only."""
    if not is_curator(user):
        raise VerdictError("verdicts need a curator account", status=403)
    if verdict not in OutlierVerdict.Verdict.values:
        raise VerdictError(f"unknown verdict {verdict!r}: one of {', '.join(OutlierVerdict.Verdict.values)}")
    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        raise VerdictError(f"image {image_id} does not exist", status=404)
    score = (
        ImageEmbedding.objects.filter(image=image, model_version__task=ModelVersion.Task.LATENT, model_version__active=True)
        .values_list("outlier_score", flat=True)
        .first()
    )
    return OutlierVerdict.objects.create(
        image=image, galaxy_id=image.galaxy_id, verdict=verdict, note=note.strip()[:500], outlier_score=score, user=user
    )


#: Colours the map offers besides the catalog's numeric columns.
MAP_OWN_COLOURS = ("outlier_score", "recon_error")


def map_colour_columns() -> list[tuple[str, str]]:
    """(name, label) of what the map can colour by: the outlier score and reconstruction error,
    then every numeric derived column (consensus, CNN, fits) and stored numeric galaxy column."""
    from catalog.columns import COLUMNS, derived_columns

    own = [("outlier_score", "outlier score"), ("recon_error", "reconstruction error")]
    derived = [(c.name, c.label) for c in derived_columns() if c.kind in ("float", "int") and c.name not in MAP_OWN_COLOURS]
    stored = [(c.name, c.label) for c in COLUMNS if c.kind in ("float", "int") and c.name not in ("pgc",)]
    return own + derived + stored


def map_points(user, colour: str = "outlier_score", *, limit: int | None = None, mv: ModelVersion | None = None) -> dict:
    """Points of the latent map: one per embedded image `user` may see (at most
    GALCAT_LATENT_MAP_LIMIT, the most unusual first): pgc, x, y, the colour value, image url.
    ValueError for a colour that is not offered."""
    from catalog.columns import with_columns

    mv = _require_version(mv)
    names = dict(map_colour_columns())
    if colour not in names:
        raise ValueError(f"unknown colour column {colour!r}")
    limit = int(conf.LATENT_MAP_LIMIT if limit is None else limit)
    qs = ImageEmbedding.objects.filter(model_version=mv, image__in=visible_images(user)).order_by("-outlier_score", "pk")
    rows = list(qs.values_list("galaxy_id", "image__file", "map_x", "map_y", "outlier_score", "recon_error")[:limit])
    pgcs = sorted({r[0] for r in rows})
    if colour in MAP_OWN_COLOURS:
        j = 4 if colour == "outlier_score" else 5
        values = [r[j] for r in rows]
    else:
        per = dict(with_columns(Galaxy.objects.filter(pk__in=pgcs), [colour]).values_list("pgc", colour))
        values = [per.get(r[0]) for r in rows]
    from django.core.files.storage import default_storage

    def clean(v):
        return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 5)

    return {
        "model": str(mv),
        "colour": colour,
        "colour_label": names[colour],
        "pgc": [r[0] for r in rows],
        "x": [round(r[2], 5) for r in rows],
        "y": [round(r[3], 5) for r in rows],
        "value": [clean(v) for v in values],
        "image": [default_storage.url(r[1]) for r in rows],
    }
