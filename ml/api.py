"""Inclinet-compatible endpoints (Kourkchi et al. 2020, ApJ 902, 145; the public Inclinet API):

- GET  /api/pgc/<id>        the catalog galaxy's images, predicted (and stored) by the active version
- GET  /api/objname/<name>  the same, looked up by any of the galaxy's names
- POST /api/file            multipart "file": PNG, JPEG, GIF or FITS, at most GALCAT_UPLOAD_MAX_BYTES

Every answer is JSON: status ("success" or "error"), message, galaxy{pgc, ra, dec, fov, pa,
objname}, inclinations{<member>: deg, ..., summary{mean, median, stdev}}, rejection_likelihood,
and for files the filename. Bad input gets 400 and unknown galaxies 404, with a clear message.
"""

from __future__ import annotations

import io
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authentication import CSRFCheck

from core.api.throttles import InferenceThrottle
from ml.conf import conf
from ml.preprocess import load_image_bytes
from ml.services import active_version, ensemble_for, galaxy_summary, predict_and_store
from ml.weights_files import WeightsChecksumError


class ApiInputError(ValueError):
    """Bad input: answered with 400 and the message."""


def _error(message: str, status: int, **extra) -> JsonResponse:
    return JsonResponse({"status": "error", "message": message, **extra}, status=status)


def galaxy_info(galaxy) -> dict:
    """Inclinet's galaxy block: pgc, ra, dec (deg), fov (arcmin, twice d25), pa (deg), objname."""
    names = list(galaxy.names.all()[:1]) if hasattr(galaxy, "names") else []
    d25 = getattr(galaxy, "d25", None)
    return {
        "pgc": galaxy.pgc,
        "ra": galaxy.ra,
        "dec": galaxy.dec,
        "fov": round(2 * d25, 3) if d25 else None,
        "pa": getattr(galaxy, "pa", None),
        "objname": names[0].name if names else f"PGC {galaxy.pgc}",
    }


def galaxy_answer(galaxy) -> tuple[dict, int]:
    """Inclinet answer for a catalog galaxy: stored predictions of the active version; the
    galaxy's images are predicted (and stored) first when some are missing."""
    mv = active_version()
    image_ids = list(galaxy.images.values_list("pk", flat=True))
    if not image_ids:
        return {"status": "error", "message": f"PGC {galaxy.pgc} has no image in the catalog", "galaxy": galaxy_info(galaxy)}, 404
    have = set(galaxy.predictions.filter(model_version=mv).values_list("image_id", flat=True))
    missing = [i for i in image_ids if i not in have]
    if missing:
        predict_and_store(missing, mv)
    s = galaxy_summary(galaxy, mv)
    if s is None:
        return {"status": "error", "message": f"no image of PGC {galaxy.pgc} could be read", "galaxy": galaxy_info(galaxy)}, 404
    return {
        "status": "success",
        "message": f"{len(s['predictions'])} image(s), model {mv.name} v{mv.version}",
        "galaxy": galaxy_info(galaxy),
        "inclinations": {**s["members"], "summary": s["summary"]},
        "rejection_likelihood": s["rejection_likelihood"],
        "axis_ratio": s["baseline"],
    }, 200


def checked_image(data: bytes, filename: str) -> np.ndarray:
    """The decoded pixels of an uploaded image's bytes, after the upload limits (bytes, pixels from
    the header before decoding, smallest side) and a check that it has something to measure;
    ApiInputError on bad input."""
    cap = int(conf.UPLOAD_MAX_BYTES)
    if len(data) == 0:
        raise ApiInputError(f"{filename}: the file is empty (0 bytes)")
    if len(data) > cap:
        raise ApiInputError(f"{filename}: the file has {len(data)} bytes, more than the limit of {cap} bytes")
    _check_dimensions(data, filename)
    try:
        image = load_image_bytes(data, filename)
    except ValueError as exc:
        raise ApiInputError(f"{filename}: {exc}") from exc
    minimum = int(conf.IMAGE_MIN_SIZE)
    if min(image.shape[:2]) < minimum:
        raise ApiInputError(f"{filename}: image of {image.shape[1]}x{image.shape[0]} pixels is too small ({minimum}x{minimum} at least)")
    finite = np.isfinite(image)
    if not finite.any():
        raise ApiInputError(f"{filename}: the image has no finite pixel (all NaN or infinite)")
    if float(np.ptp(image[finite])) == 0.0:
        raise ApiInputError(f"{filename}: the image is constant (every pixel {image[finite].flat[0]}): no galaxy to measure")
    return image


def file_answer(data: bytes, filename: str) -> dict:
    """Inclinet answer for an uploaded image's bytes; ApiInputError on bad input."""
    image = checked_image(data, filename)
    ens = ensemble_for(active_version())
    res = _bounded(ens.predict_images, [image])
    members = {n: round(float(v), 2) for n, v in zip(ens.names, res["per_member"][0], strict=True)}
    flat = res["passes"][0]
    return {
        "status": "success",
        "message": "",
        "filename": filename,
        "galaxy": {"pgc": None, "ra": None, "dec": None, "fov": None, "pa": None, "objname": None},
        "inclinations": {
            **members,
            "summary": {
                "mean": round(float(np.mean(flat)), 2),
                "median": round(float(np.median(flat)), 2),
                "stdev": round(float(np.std(flat)), 2),
            },
        },
        "rejection_likelihood": round(float(res["reject_likelihood"][0]), 4),
    }


def _check_dimensions(data: bytes, filename: str) -> None:
    """Refuse images larger than GALCAT_UPLOAD_MAX_PIXELS from their header, before decoding."""
    from PIL import Image

    cap = int(conf.UPLOAD_MAX_PIXELS)
    try:
        if data[:6] == b"SIMPLE" or filename.lower().endswith((".fits", ".fit", ".fts")):
            from astropy.io import fits

            header = fits.Header.fromstring(data[: 2880 * 10].split(b"END" + b" " * 77)[0].decode("ascii", "replace") + "END")
            width, height = int(header.get("NAXIS1", 0)), int(header.get("NAXIS2", 0))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    width, height = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ApiInputError(f"{filename}: image too large: {exc}") from None
    except Exception:  # noqa: BLE001 - an unreadable header is reported by the decoder next
        return
    if width * height > cap:
        raise ApiInputError(f"{filename}: image of {width}x{height} pixels exceeds the limit of {cap} pixels")


_POOL: ThreadPoolExecutor | None = None
_SLOTS: threading.BoundedSemaphore | None = None


class Busy(RuntimeError):
    """Every inference slot of this process is taken, or the call ran past its time."""


def _bounded(fn, *args):
    """fn(*args) in this process's bounded pool (GALCAT_FILE_WORKERS threads): Busy when every
    slot is taken or when it runs past GALCAT_FILE_TIMEOUT seconds."""
    global _POOL, _SLOTS
    if _POOL is None:
        workers = max(1, int(conf.FILE_WORKERS))
        _POOL, _SLOTS = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-file"), threading.BoundedSemaphore(workers)
    if not _SLOTS.acquire(blocking=False):
        raise Busy("the inference service is busy; retry in a few seconds")
    future = _POOL.submit(fn, *args)
    future.add_done_callback(lambda _f: _SLOTS.release())
    try:
        return future.result(timeout=float(conf.FILE_TIMEOUT))
    except FutureTimeout:
        raise Busy(f"inference took longer than {conf.FILE_TIMEOUT} s") from None


def resolve_name(name: str):
    """Galaxy for a name (any alias, or a PGC/LEDA designation); None when unknown."""
    from catalog.models import Galaxy, GalaxyName
    from catalog.names import normalise_name, pgc_from_name

    alias = GalaxyName.objects.select_related("galaxy").filter(normalised=normalise_name(name)).first()
    if alias is not None:
        return alias.galaxy
    pgc = pgc_from_name(name)
    if pgc is not None:
        return Galaxy.objects.filter(pk=pgc).first()
    return None


def _galaxy_response(galaxy, what: str) -> JsonResponse:
    if galaxy is None:
        return _error(f"{what} is not in the catalog", 404)
    try:
        body, status = galaxy_answer(galaxy)
    except WeightsChecksumError as exc:
        return _error(str(exc), 503)
    return JsonResponse(body, status=status)


@require_GET
def pgc_view(request: HttpRequest, pgc: int) -> JsonResponse:
    from catalog.models import Galaxy

    return _galaxy_response(Galaxy.objects.filter(pk=pgc).first(), f"PGC {pgc}")


@require_GET
def objname_view(request: HttpRequest, name: str) -> JsonResponse:
    if not name.strip():
        return _error("empty object name", 400)
    return _galaxy_response(resolve_name(name), repr(name))


@csrf_exempt  # checked below as in the rest of the API: only for session-authenticated requests
@require_POST
def file_view(request: HttpRequest) -> JsonResponse:
    if request.user.is_authenticated and (reason := _csrf_failure(request)):
        return _error(f"CSRF failed: {reason}", 403)
    throttle = InferenceThrottle()
    if not throttle.allow_request(request, None):
        wait = throttle.wait()
        response = _error(f"too many requests: retry in {int(wait or 1)} s", 429)
        response["Retry-After"] = str(int(wait or 1))
        return response
    up = request.FILES.get("file")
    if up is None:
        return _error('no file: send the image as multipart/form-data field "file"', 400)
    cap = int(conf.UPLOAD_MAX_BYTES)
    if up.size > cap:
        return _error(f"{up.name}: the file has {up.size} bytes, more than the limit of {cap} bytes", 400, filename=up.name)
    try:
        body = file_answer(up.read(), up.name)
    except ApiInputError as exc:
        return _error(str(exc), 400, filename=up.name)
    except WeightsChecksumError as exc:
        return _error(str(exc), 503, filename=up.name)
    except Busy as exc:
        response = _error(str(exc), 503, filename=up.name)
        response["Retry-After"] = "5"
        return response
    return JsonResponse(body)


def _csrf_failure(request: HttpRequest) -> str | None:
    """DRF's SessionAuthentication check: the CSRF failure reason, or None."""
    check = CSRFCheck(lambda r: None)
    check.process_request(request)
    response = check.process_view(request, None, (), {})
    return "missing or wrong CSRF token (signed-in requests need one)" if response is not None else None
