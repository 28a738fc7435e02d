"""The README's flow over real HTTP (requests against the live test server)."""

from __future__ import annotations

import io

import pytest
import requests
from astropy.io.votable import parse_single_table

from core.roles import VOLUNTEER, ensure_groups, grant
from tests.factories import GalaxyFactory, UserFactory


@pytest.mark.slow
def test_token_vote_table_and_revoke_over_http(live_server, transactional_db):
    ensure_groups()
    user = UserFactory(username="httpvol")
    grant(user, VOLUNTEER)
    galaxies = [GalaxyFactory(ra=20.0 + 0.1 * i, dec=-5.0, vhel=1000.0 + i) for i in range(5)]
    api = f"{live_server.url}/api/v1"
    r = requests.post(f"{api}/token/", json={"username": "httpvol", "password": "pw-for-tests-123"}, timeout=30)
    assert r.status_code == 201
    s = requests.Session()
    s.headers["Authorization"] = f"Token {r.json()['key']}"
    rows, url, params = [], f"{api}/galaxies/", {"page_size": 2, "ordering": "-vhel", "fields": "pgc,vhel"}
    while url:
        page = s.get(url, params=params, timeout=30).json()
        rows += page["results"]
        url, params = page["next"], None
    assert [g["pgc"] for g in rows] == [g.pgc for g in reversed(galaxies)]
    vot = s.get(f"{api}/galaxies/", params={"format": "votable", "fields": "pgc,vhel"}, timeout=30)
    assert len(parse_single_table(io.BytesIO(vot.content)).array) == 5
    assert s.post(f"{api}/votes/", json={"pgc": galaxies[0].pgc, "inc": 66}, timeout=30).status_code == 201
    assert s.delete(f"{api}/token/", timeout=30).status_code == 204
    r = s.get(f"{api}/votes/", timeout=30)
    assert r.status_code == 401 and r.headers["Content-Type"].startswith("application/json")
