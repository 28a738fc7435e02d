import pytest

from catalog.models import GalaxyName
from tests.factories import GalaxyFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def ngc4565(transactional_db):
    g = GalaxyFactory(pgc=42038, ra=189.0867, dec=25.9875, type="Sb")
    GalaxyName.objects.create(galaxy=g, name="NGC 4565")
    GalaxyFactory(pgc=42039, ra=189.10, dec=25.99, type="Sc")
    GalaxyFactory(pgc=50000, ra=10.0, dec=-45.0)
    return g


def test_search_by_name_and_position_then_open_a_galaxy(page, live_server, ngc4565):
    page.goto(f"{live_server.url}/", wait_until="domcontentloaded", timeout=90000)
    page.wait_for_selector("#sky-map .main-svg", timeout=90000)  # plotly drew the sky map from /skymap.json
    assert page.get_attribute("#sky-map", "data-cells") == "2"  # NGC 4565 and PGC 42039 share a cell
    assert page.inner_text("#count-galaxies") == "3"

    page.fill("#search-q", "ngc4565")
    page.click("#search-go")
    page.wait_for_url("**/galaxies/42038/")
    assert "NGC 4565" in page.inner_text("#galaxy-title")
    assert "42039" in page.inner_text("#neighbours")

    page.goto(f"{live_server.url}/galaxies/")
    page.fill("#search-q", "12:36:20.8 +25:59:15 5 arcmin")
    page.click("#search-go")
    page.wait_for_selector("#galaxy-table")
    assert page.inner_text("#result-count") == "2"
    first = page.locator("#galaxy-table tbody tr").first
    assert first.locator("td").first.inner_text() == "42038"
    first.locator("a").first.click()
    page.wait_for_url("**/galaxies/42038/")
    assert page.locator("#votes-panel").count() == 1

    page.goto(f"{live_server.url}/galaxies/?q=hello+world!")
    assert "Cannot read" in page.inner_text("#search-error")
    assert not [e for e in page.console_errors if "Failed to load resource" not in e], page.console_errors  # no script errors
