"""Issue 18, findings 3, 4, 7 and 10: /api/file and uploads bounded, bodies bounded (413),
the production settings profile, tiny images refused at upload."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import GalaxyFactory, png_bytes
from tests.ml.makers import make_weights

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def version(db, tmp_path):
    from ml.services import register_weights

    return register_weights(make_weights(tmp_path / "w", members=2), name="test", version="1")


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height 8-bit grey pixels (one compressed row)."""
    row = b"\x00" + b"\x00" * width
    raw = zlib.compress(row * 4, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", raw)
        + chunk(b"IEND", b"")
    )


def fits_bytes(array: np.ndarray) -> bytes:
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(array.astype(np.float32)).writeto(buf)
    return buf.getvalue()


def _post_file(client: Client, name: str, data: bytes):
    f = io.BytesIO(data)
    f.name = name
    return client.post("/api/file", {"file": f})


# -- finding 3: /api/file ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,data,words",
    [
        ("bomb.png", bomb_png(30000, 30000), "image too large"),
        ("big.png", bomb_png(8000, 8000), "exceeds the limit"),
        ("nan.fits", fits_bytes(np.full((64, 64), np.nan)), "no finite pixel"),
        ("flat.fits", fits_bytes(np.full((64, 64), 3.0)), "constant"),
        ("tiny.png", png_bytes(8), "too small"),
    ],
)
def test_api_file_refuses_bombs_nan_and_constant_images(version, name, data, words):
    r = _post_file(Client(), name, data)
    assert r.status_code == 400, r.content[:300]
    assert r.json()["status"] == "error" and words in r.json()["message"]


def test_api_file_has_its_own_throttle(version, settings):
    settings.GALCAT_API_THROTTLE_INFERENCE = "2/min"
    codes = [_post_file(Client(), "g.png", png_bytes(64)).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    r = _post_file(Client(), "g.png", png_bytes(64))
    assert int(r["Retry-After"]) > 0 and r.json()["message"].count("retry") == 1


def test_api_file_csrf_like_the_api(version, member):
    signed_in = Client(enforce_csrf_checks=True)
    signed_in.force_login(member)
    assert _post_file(signed_in, "g.png", png_bytes(64)).status_code == 403
    assert _post_file(Client(enforce_csrf_checks=True), "g.png", png_bytes(64)).status_code == 200  # anonymous scripts


def test_api_file_bounded_pool_answers_busy(version, settings, monkeypatch):
    import threading

    from ml import api

    settings.GALCAT_FILE_TIMEOUT = 0.2
    release = threading.Event()
    monkeypatch.setattr(api, "_POOL", None)
    from ml.inference import Ensemble

    original = Ensemble.predict_images

    def slow(self, images, **kw):
        release.wait(5)
        return original(self, images, **kw)

    monkeypatch.setattr(Ensemble, "predict_images", slow)
    r = _post_file(Client(), "g.png", png_bytes(64))
    assert r.status_code == 503 and "longer than" in r.json()["message"]
    r = _post_file(Client(), "g.png", png_bytes(64))  # the first call still holds the only slot
    assert r.status_code == 503 and "busy" in r.json()["message"] and r["Retry-After"]
    release.set()


# -- findings 3 and 10: uploads ---------------------------------------------------------------------------
@pytest.mark.parametrize("data,words", [(bomb_png(8000, 8000), "exceeds the limit"), (png_bytes(1), "too small")])
def test_image_upload_refuses_bombs_and_tiny_images(member, data, words):
    from tests.api.conftest import token_client

    galaxy = GalaxyFactory()
    f = io.BytesIO(data)
    f.name = "x.png"
    r = token_client(member).post("/api/v1/images/", {"file": f, "pgc": galaxy.pgc, "band": "g"}, format="multipart")
    assert r.status_code == 400 and words in r.json()["message"] and r.json()["field"] == "file"


# -- finding 4: body size --------------------------------------------------------------------------------
def test_json_body_beyond_the_limit_answers_413_json(db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"username": "x" * 5000, "password": "y"})
    r = Client().post("/api/v1/token/", body, content_type="application/json")
    assert r.status_code == 413 and r.json()["status"] == 413 and "limit of 1000 bytes" in r.json()["message"]
    ok = Client().post("/api/v1/token/", json.dumps({"username": "x", "password": "y"}), content_type="application/json")
    assert ok.status_code == 400


def test_multipart_body_beyond_its_limit_answers_413(db, settings):
    settings.GALCAT_REQUEST_MAX_BYTES = 2000
    f = io.BytesIO(b"x" * 5000)
    f.name = "x.png"
    r = Client().post("/api/file", {"file": f})
    assert r.status_code == 413


# -- finding 7: deployment profile -------------------------------------------------------------------------
def _manage(*args: str, var_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """A fresh Python in the project with the given environment and var/ folder (where settings
    look for the key that `make run` keeps)."""
    # DJANGO_ALLOW_ASYNC_UNSAFE is set by the browser tests' fixture in this process; a deployment has none.
    unset = ("DJANGO_DEBUG", "DJANGO_SECRET_KEY", "GALCAT_TESTING", "GALCAT_HTTPS", "DJANGO_ALLOW_ASYNC_UNSAFE")
    base = {k: v for k, v in os.environ.items() if k not in unset}
    env = {**base, "GALCAT_VAR_DIR": str(var_dir), **env}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_debug_off_by_default_and_the_development_key_refused(tmp_path):
    r = _manage(
        "-c",
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "
        "from django.conf import settings; print(settings.DEBUG)",
        var_dir=tmp_path,
    )
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr[-2000:]
    r = _manage("-c", "import config.wsgi", var_dir=tmp_path)
    assert r.returncode != 0 and "DJANGO_SECRET_KEY is not set" in r.stderr
    r = _manage("-c", "import config.wsgi", var_dir=tmp_path, DJANGO_SECRET_KEY="k" * 60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _manage("-c", "import config.wsgi", var_dir=tmp_path, DJANGO_DEBUG="1").returncode == 0


def test_the_key_make_run_keeps_is_read_when_none_is_given(tmp_path):
    (tmp_path / "secret_key.txt").write_text("r" * 60 + "\n")
    r = _manage("-c", "import config.wsgi; from django.conf import settings; print(settings.SECRET_KEY)", var_dir=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "r" * 60, r.stderr[-2000:]


def test_check_deploy_is_clean_in_the_production_profile(tmp_path):
    key = "p8#K2v!qLz0@xR7mN4wT6yB1cD9fG3hJ5kS-uV_eW+aZ=oI&lM"
    r = _manage("manage.py", "check", "--deploy", "--fail-level", "WARNING", var_dir=tmp_path, DJANGO_SECRET_KEY=key, GALCAT_HTTPS="1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "no issues" in r.stdout


def test_security_headers_and_custom_error_pages(db, settings):
    settings.DEBUG = False
    r = Client().get("/no/such/page/")
    assert r.status_code == 404 and b"URLconf" not in r.content and b"Page not found" in r.content
    r = Client().get("/")
    assert "frame-ancestors 'none'" in r["Content-Security-Policy"] and r["Referrer-Policy"] == "same-origin"
