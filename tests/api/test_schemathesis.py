"""Schemathesis against the live test server: generated requests to every endpoint of the
schema, signed in as a curator (so every endpoint is reachable) and anonymously, find no 5xx
answer and no answer the schema does not describe (`--checks all`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from catalog.api.tokens import issue_token
from catalog.models import Release, ReleaseRow
from catalog.releases import publish_release
from core.roles import CURATOR, ensure_groups, grant
from jobs.services import create_job
from tests.factories import GalaxyFactory, GalaxyNameFactory, UserFactory, make_image

ST = Path(sys.executable).with_name("st")


@pytest.mark.slow
def test_no_server_error_on_any_endpoint(live_server, transactional_db, settings, tmp_path):
    settings.GALCAT_API_THROTTLE_ANON = ""  # the fuzzer sends many requests from one address
    settings.GALCAT_API_THROTTLE_USER = ""
    settings.GALCAT_VOTE_RATE = "1000/60"
    ensure_groups()
    user = UserFactory(username="fuzzer")
    grant(user, CURATOR)
    galaxies = [GalaxyFactory(ra=10.0 + i, dec=5.0) for i in range(3)]
    GalaxyNameFactory(galaxy=galaxies[0], name="NGC 1")
    make_image(galaxies[0], "g", size=32)
    release = Release.objects.create(slug="fuzz-v1", name="Fuzz", version="1", columns=["pgc", "inc"])
    ReleaseRow.objects.create(release=release, galaxy=galaxies[0], ra=10.0, dec=5.0, healpix=galaxies[0].healpix, values={"inc": 70})
    publish_release(release)
    create_job("fit", {}, user=user)
    token = issue_token(user).key
    # The schema is fetched once here (the first one builds slowly: lazy imports), then the
    # fuzzer reads it from a file and sends every request to the live server.
    schema = Client().get("/api/schema/?format=json")
    assert schema.status_code == 200
    (tmp_path / "schema.json").write_bytes(schema.content)

    base = [
        str(ST),
        "run",
        str(tmp_path / "schema.json"),
        "--url",
        live_server.url,
        "--checks",
        "all",
        # Schema-valid bodies that break a rule no schema states (the PGC must be in the catalog,
        # an inclination is needed unless the vote flags the galaxy) rightly answer 400.
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        os.environ.get("GALCAT_FUZZ_EXAMPLES", "3"),  # more for a deeper run by hand
        "--phases",
        "examples,fuzzing",
        "--seed",
        "20261122",
        "--no-shrink",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--header",
        f"Authorization: Token {token}",
        "--no-color",
    ]
    outs = []
    # Everything but the token endpoint first: fuzzing DELETE /token/ revokes the fuzzer's token.
    for selection in (["--exclude-path", "/api/v1/token/"], ["--include-path", "/api/v1/token/"]):
        proc = subprocess.run(base + selection, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        outs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, outs[-1][-6000:]
    # Anonymously: the schema must describe the 401/403/404 answers too.
    i = base.index("--header")
    proc = subprocess.run(
        base[:i] + base[i + 2 :] + ["--exclude-path", "/api/v1/token/"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    print(outs[0][-1200:])  # the summary, with pytest -s
    assert "Authentication failed" not in outs[0], outs[0][-6000:]
    tested = int(re.search(r"Tested: (\d+)", outs[0]).group(1))
    paths = {k for k in json.loads((tmp_path / "schema.json").read_text())["paths"] if k != "/api/v1/token/"}
    assert tested >= len(paths) >= 12  # every operation of every path was exercised
