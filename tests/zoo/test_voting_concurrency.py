"""Many threads voting at once on real PostgreSQL: no vote lost, never two per volunteer and galaxy."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.db.models import Count

from core.roles import VOLUNTEER, grant
from tests.factories import GalaxyFactory, UserFactory
from zoo.models import InclinationVote
from zoo.voting import AlreadyVoted, ReplayedVote, record_vote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

N_USERS = 8
N_GALAXIES = 6
REPEATS = 3  # each (volunteer, galaxy) pair is submitted by this many threads at once


def _in_thread(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    finally:
        connections.close_all()


def test_concurrent_votes_are_all_stored_once(settings):
    settings.GALCAT_VOTE_RATE = "1000/60"
    users = [UserFactory() for _ in range(N_USERS)]
    for u in users:
        grant(u, VOLUNTEER)
    galaxies = [GalaxyFactory() for _ in range(N_GALAXIES)]
    jobs = [(u, g, 45.0 + (i * 7 + j) % 45) for i, u in enumerate(users) for j, g in enumerate(galaxies)] * REPEATS
    barrier = threading.Barrier(16)
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def vote(job):
        user, galaxy, inc = job
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        try:
            record_vote(user, galaxy.pk, inc)
            result = "stored"
        except AlreadyVoted:
            result = "already"
        with lock:
            outcomes[result] += 1

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda j: _in_thread(vote, j), jobs))

    pairs = N_USERS * N_GALAXIES
    assert outcomes["stored"] == pairs
    assert outcomes["already"] == pairs * (REPEATS - 1)
    assert InclinationVote.objects.count() == pairs
    dupes = InclinationVote.objects.values("user", "galaxy", "round").annotate(n=Count("id")).filter(n__gt=1)
    assert not dupes.exists()
    assert connection.is_usable()


def test_concurrent_replays_of_one_form_store_one_vote(settings):
    settings.GALCAT_VOTE_RATE = "1000/60"
    user = UserFactory()
    grant(user, VOLUNTEER)
    galaxies = [GalaxyFactory() for _ in range(8)]
    barrier = threading.Barrier(8)
    results = []
    lock = threading.Lock()

    def vote(galaxy):
        barrier.wait(timeout=5)
        try:
            record_vote(user, galaxy.pk, 60.0, client_token="one-form-token")
            r = "stored"
        except ReplayedVote:
            r = "replayed"
        with lock:
            results.append(r)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda g: _in_thread(vote, g), galaxies))
    assert sorted(results) == ["replayed"] * 7 + ["stored"]
    assert InclinationVote.objects.filter(client_token="one-form-token").count() == 1


def test_concurrent_http_votes_through_the_voting_page(live_server, settings):
    """Real HTTP: volunteers post the voting form from many threads at once, each form twice."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    from django.test import Client

    from tests.factories import make_image
    from zoo.services import make_ticket

    settings.GALCAT_VOTE_RATE = "1000/60"
    galaxies = [GalaxyFactory() for _ in range(3)]
    for g in galaxies:
        make_image(g, size=32)
    sessions = []
    for _ in range(5):
        user = UserFactory()
        grant(user, VOLUNTEER)
        client = Client()
        client.force_login(user)
        sessions.append((user, client.cookies["sessionid"].value))

    def post(job):
        (user, sessionid), galaxy, ticket = job
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.addheaders = [("Cookie", f"sessionid={sessionid}")]
        page = opener.open(f"{live_server.url}/accounts/profile/").read().decode()
        csrf_cookie = next(c.value for c in jar if c.name == "csrftoken")
        csrf_form = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"pgc": galaxy.pgc, "ticket": ticket, "inc": "70.5", "csrfmiddlewaretoken": csrf_form}).encode()
        req = urllib.request.Request(
            f"{live_server.url}/zoo/vote/", data=body, headers={"Cookie": f"sessionid={sessionid}; csrftoken={csrf_cookie}"}
        )
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.geturl()

    jobs = []
    for s in sessions:
        for g in galaxies:
            ticket = make_ticket(g.pgc)
            jobs += [(s, g, ticket), (s, g, ticket)]  # the same form submitted twice
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda j: _in_thread(post, j), jobs))
    assert all(code == 200 and url.endswith("/zoo/") for code, url in statuses)  # redirected back to the page
    assert InclinationVote.objects.count() == len(sessions) * len(galaxies)
    assert not InclinationVote.objects.values("user", "galaxy").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert set(InclinationVote.objects.values_list("source", flat=True)) == {"web"}
