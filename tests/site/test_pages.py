import urllib.request

import pytest

from catalog.models import Galaxy


@pytest.mark.django_db
def test_home_list_detail_and_admin_over_http(live_server, edd_galaxies):
    with urllib.request.urlopen(f"{live_server.url}/") as resp:
        body = resp.read().decode()
    assert 'id="count-galaxies">98<' in body
    with urllib.request.urlopen(f"{live_server.url}/galaxies/") as resp:
        assert resp.status == 200 and "/galaxies/2/" in resp.read().decode()
    with urllib.request.urlopen(f"{live_server.url}/galaxies/4/") as resp:
        page = resp.read().decode()
    assert "PGC 4" in page and "km/s" in page and "16.43" in page  # g_mag of PGC 4 with its unit row
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{live_server.url}/galaxies/999999999/")
    assert info.value.code == 404
    with urllib.request.urlopen(f"{live_server.url}/admin/login/") as resp:
        assert resp.status == 200
    assert Galaxy.objects.count() == 98
