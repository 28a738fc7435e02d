"""PNG renderings of a stored fit: data, model and residual on the fitted grid."""

from __future__ import annotations

import io

import numpy as np
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.cache import cache_control

from core.roles import is_member
from fitting.models import FitResult
from fitting.services import FitInputError, model_images

WHICH = ("data", "model", "residual")


def png_bytes(data: np.ndarray, model: np.ndarray, which: str) -> bytes:
    """8-bit PNG: data and model on one asinh stretch (black = sky), residual grey = 0, +-5 sigma."""
    from PIL import Image as PILImage

    sky = float(np.median(np.concatenate([data[:4].ravel(), data[-4:].ravel()])))
    if which == "residual":
        res = data - model
        sig = 1.4826 * float(np.median(np.abs(res - np.median(res)))) or 1.0
        img = np.clip(0.5 + res / (10 * sig), 0, 1)
    else:
        arr = data if which == "data" else model
        top = float(np.percentile(data, 99.8)) - sky or 1.0
        soft = top / 20
        img = np.clip(np.arcsinh(np.clip(arr - sky, 0, None) / soft) / np.arcsinh(top / soft), 0, 1)
    buf = io.BytesIO()
    PILImage.fromarray((img * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@cache_control(max_age=3600, private=True)
def fit_png(request, fit_id: int, which: str):
    if which not in WHICH:
        raise Http404("which must be data, model or residual")
    result = get_object_or_404(FitResult.objects.select_related("image"), pk=fit_id)
    if not result.image.is_public and not is_member(request.user):
        raise Http404("no such fit")
    try:
        data, model, _ = model_images(result)
    except FitInputError as exc:
        raise Http404(str(exc)) from exc
    return HttpResponse(png_bytes(data, model, which), content_type="image/png")
