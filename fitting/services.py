"""Fitting catalog images: preparation of the pixels, batch fits, idempotent storage.

The catalog's SDSS cutouts are 512 x 512 display images (PNG/JPEG, galaxy dark on light); they are
turned into light (inverted when the image is), averaged to grey, block-averaged to at most
FIT_SIZE pixels on a side and fitted without a PSF model (the fitted parameters describe the
seeing-convolved light, in display units). FITS images go through the same path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils.module_loading import import_string

from catalog.models import Galaxy, Image
from fitting.columns import refresh_fit_summary
from fitting.conf import conf
from fitting.engine.version import ENGINE_VERSION
from fitting.models import FitResult
from fitting.signals import fits_stored

# torch and the engine load on the first fit or rendering, not when pages import this module.

#: Fitted images are block-averaged to at most this many pixels on a side.
FIT_SIZE = 128
#: Galaxies per engine batch (the engine splits further by free memory on a GPU).
FIT_BATCH = 64
#: Floor of the per-pixel noise: 8-bit quantisation, 1/sqrt(12) grey level, averaged over a block.
QUANTISATION_SIGMA = 1.0 / math.sqrt(12.0)
PSF_NOTE = "none"


class FitInputError(ValueError):
    """An image that cannot be prepared for fitting."""


@dataclass
class Prepared:
    """Pixels ready for the engine: data [H, W] (light positive, float32), constant sigma, binning."""

    data: np.ndarray
    sigma: np.ndarray
    scale: int


def read_pixels(image: Image) -> np.ndarray:
    """Decoded pixels of a catalog Image, float32 [H, W] or [H, W, 3]."""
    from catalog.importers.images import ImageDecodeError, decode_image

    try:
        with image.file.open("rb") as fh:
            data = fh.read()
        return decode_image(data, image.file.name).pixels
    except (OSError, ImageDecodeError) as exc:
        raise FitInputError(f"image {image.pk}: {exc}") from exc


def prepare_pixels(arr: np.ndarray, inverted: bool, size: int = FIT_SIZE) -> Prepared:
    """Grey, light-positive, block-averaged pixels and their noise.

    arr: [H, W] or [H, W, C]. The noise is the border MAD of the binned image, floored at the
    8-bit quantisation noise of a block mean.
    """
    grey = arr.mean(axis=2) if arr.ndim == 3 else arr
    grey = np.asarray(grey, dtype=np.float64)
    if inverted:
        grey = np.nanmax(grey) - grey
    h, w = grey.shape
    scale = max(1, math.ceil(max(h, w) / size))
    hb, wb = h // scale, w // scale
    if hb < 8 or wb < 8:
        raise FitInputError(f"image of {w}x{h} pixels is too small to fit")
    binned = grey[: hb * scale, : wb * scale].reshape(hb, scale, wb, scale).mean(axis=(1, 3))
    border = np.concatenate([binned[:4].ravel(), binned[-4:].ravel(), binned[:, :4].ravel(), binned[:, -4:].ravel()])
    border = border[np.isfinite(border)]
    mad = float(np.median(np.abs(border - np.median(border)))) * 1.4826 if border.size else 0.0
    noise = max(mad, QUANTISATION_SIGMA / scale)
    return Prepared(binned.astype(np.float32), np.full(binned.shape, noise, dtype=np.float32), scale)


def prepare_image(image: Image) -> Prepared:
    return prepare_pixels(read_pixels(image), bool(image.inverted))


def _typed(kind: str, params: dict, errors: dict, scale: float) -> dict:
    """Typed columns: disk (or single Sérsic) re, q, theta; bulge (or single) n."""
    pre_disk = "disk." if kind == FitResult.Kind.BULGE_DISK else ""
    pre_n = "bulge." if kind == FitResult.Kind.BULGE_DISK else ""

    def val(d, k, mult=1.0):
        v = d.get(k)
        return None if v is None or not math.isfinite(v) else v * mult

    return {
        "re": val(params, pre_disk + "re", scale),
        "re_err": val(errors, pre_disk + "re", scale),
        "n": val(params, pre_n + "n"),
        "n_err": val(errors, pre_n + "n"),
        "q": val(params, pre_disk + "q"),
        "q_err": val(errors, pre_disk + "q"),
        "theta": val(params, pre_disk + "theta", 180.0 / math.pi),
    }


def _clean(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


#: Start values of a fit: from a learned initialiser (GALCAT_FIT_INIT) when it gives some, else
#: image moments ('auto'); always moments; always the initialiser (an error when it gives none).
INIT_CHOICES = ("auto", "moments", "cnn")


class NoInitialiserError(ValueError):
    """init='cnn' was asked for but the initialiser gives no start values (no active model)."""


def initial_values(data: list[np.ndarray], sigma: list[np.ndarray], model_kind: str, init: str) -> np.ndarray | None:
    """Start values [B, P] (engine physical order) from the GALCAT_FIT_INIT initialiser, or None
    for the engine's moments. fitting never imports the app that provides it (ml depends on
    fitting): the dotted path is resolved here, at call time."""
    if init not in INIT_CHOICES:
        raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INIT_CHOICES)}")
    if init == "moments":
        return None
    path = conf.FIT_INIT
    values = import_string(path)(data, sigma, model_kind) if path else None
    if values is None and init == "cnn":
        raise NoInitialiserError(f"no start values from {path or 'GALCAT_FIT_INIT (unset)'}: is a morphology model active?")
    return values


def fit_and_store(
    image_ids: Iterable[int],
    model_kind: str = FitResult.Kind.SERSIC,
    *,
    progress: Callable[[int, int], None] | None = None,
    device: str | None = None,
    init: str = "auto",
) -> dict:
    """Fit images and upsert one FitResult per (image, model, engine version).

    Images that cannot be read are stored as failed fits with their reason; nothing is written
    for ids that do not exist. Returns counts {'stored', 'converged', 'failed', 'missing'} and
    {'started_from': {'moments': k, 'cnn': k}}. progress(done, total) is called after each batch.
    init: see INIT_CHOICES.
    """
    if model_kind not in FitResult.Kind.values:
        raise ValueError(f"unknown model {model_kind!r}; expected one of {', '.join(FitResult.Kind.values)}")
    if init not in INIT_CHOICES:
        raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INIT_CHOICES)}")
    import torch

    from fitting.engine.fit import fit

    ids = list(dict.fromkeys(int(i) for i in image_ids))
    images = {im.pk: im for im in Image.objects.filter(pk__in=ids)}
    missing = len(ids) - len(images)
    todo = [images[i] for i in ids if i in images]
    stored = converged = failed = 0
    started = {"moments": 0, "cnn": 0}
    for start in range(0, len(todo), FIT_BATCH):
        batch = todo[start : start + FIT_BATCH]
        rows: list[FitResult] = []
        groups: dict[tuple[int, int], list[tuple[Image, Prepared]]] = {}
        for im in batch:
            try:
                prep = prepare_image(im)
            except FitInputError as exc:
                rows.append(FitResult(image=im, model_kind=model_kind, engine_version=ENGINE_VERSION, reason=str(exc)[:500]))
                continue
            groups.setdefault(prep.data.shape, []).append((im, prep))
        for group in groups.values():
            data = torch.from_numpy(np.stack([p.data for _, p in group]))
            sigma = torch.from_numpy(np.stack([p.sigma for _, p in group]))
            p0 = initial_values([p.data for _, p in group], [p.sigma for _, p in group], model_kind, init)
            started["moments" if p0 is None else "cnn"] += len(group)
            out = fit(
                data,
                sigma,
                None,
                model=model_kind,
                device=device,
                init=None if p0 is None else torch.from_numpy(np.asarray(p0, dtype=np.float64)),
            )
            per = out.seconds / len(group)
            for i, (im, prep) in enumerate(group):
                row = out.row(i)
                params = {k: _clean(v) for k, v in row["params"].items()}
                errors = {k: _clean(v) for k, v in row["errors"].items()}
                cov = [[_clean(v) for v in r] for r in row["covariance"]]
                rows.append(
                    FitResult(
                        image=im,
                        model_kind=model_kind,
                        engine_version=ENGINE_VERSION,
                        params=params,
                        errors=errors,
                        covariance=cov,
                        scale=float(prep.scale),
                        chi2=_clean(row["chi2"]),
                        dof=row["dof"],
                        iterations=row["iterations"],
                        converged=row["converged"],
                        reason=row["reason"][:500],
                        psf=PSF_NOTE,
                        device=out.device,
                        seconds=per,
                        **_typed(
                            model_kind,
                            {k: v for k, v in params.items() if v is not None},
                            {k: v for k, v in errors.items() if v is not None},
                            float(prep.scale),
                        ),
                    )
                )
        update = [
            f.name for f in FitResult._meta.concrete_fields if f.name not in ("id", "image", "model_kind", "engine_version", "created")
        ]
        with transaction.atomic():
            FitResult.objects.bulk_create(
                rows, update_conflicts=True, unique_fields=["image", "model_kind", "engine_version"], update_fields=update
            )
            # receivers (the CNN predictions' axis-ratio baseline) write in the same transaction
            fits_stored.send(sender=FitResult, image_ids=[r.image_id for r in rows if r.converged])
            refresh_fit_summary({r.image.galaxy_id for r in rows})
        stored += len(rows)
        converged += sum(1 for r in rows if r.converged)
        failed += sum(1 for r in rows if not r.converged)
        if progress is not None:
            progress(start + len(batch), len(todo))
    return {"stored": stored, "converged": converged, "failed": failed, "missing": missing, "started_from": started}


def image_ids_for(pgcs: Iterable[int] | None = None) -> list[int]:
    """Ids of the images of the given galaxies (all images when pgcs is None); unknown pgc -> ValueError."""
    qs = Image.objects.all()
    if pgcs is not None:
        pgcs = [int(p) for p in pgcs]
        known = set(Galaxy.objects.filter(pgc__in=pgcs).values_list("pgc", flat=True))
        unknown = sorted(set(pgcs) - known)
        if unknown:
            raise ValueError(f"unknown pgc: {', '.join(map(str, unknown))}")
        qs = qs.filter(galaxy__pgc__in=pgcs)
    return list(qs.order_by("pk").values_list("pk", flat=True))


def stale_image_ids(model_kind: str = FitResult.Kind.SERSIC) -> list[int]:
    """Images without a fit of this model by the current engine version."""
    done = FitResult.objects.filter(model_kind=model_kind, engine_version=ENGINE_VERSION).values("image_id")
    return list(Image.objects.exclude(pk__in=done).order_by("pk").values_list("pk", flat=True))


def model_images(result: FitResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, model, residual) [H, W] float32 of a stored fit, re-rendered from its parameters."""
    import torch

    from fitting.engine.fit import physical_to_m
    from fitting.engine.lm import physical_names
    from fitting.engine.model import Renderer, model_spec

    prep = prepare_image(result.image)
    spec = model_spec(result.model_kind)

    names = physical_names(spec)
    if not result.params or any(result.params.get(k) is None for k in names):
        raise FitInputError("this fit has no parameters to render")
    p = torch.tensor([[result.params[k] for k in names]], dtype=torch.float64)
    h, w = prep.data.shape
    r = Renderer(spec, h, w, None, dtype=torch.float32)
    model, _ = r.render(physical_to_m(p, spec).float(), need_grad=False)
    model = model[0].numpy()
    return prep.data, model, prep.data - model


def fits_for_galaxy(galaxy: Galaxy, images=None) -> list[FitResult]:
    """The current engine's fits of a galaxy's images (or of `images` only: those the viewer may
    see), by band and model."""
    qs = FitResult.objects.filter(image__galaxy=galaxy, engine_version=ENGINE_VERSION)
    if images is not None:
        qs = qs.filter(image__in=images)
    return list(qs.select_related("image").order_by("image__band", "model_kind"))
