"""The jobs page, its polling endpoint and the cancel/retry buttons (real HTTP through the test client)."""

from __future__ import annotations

import pytest

from jobs.models import Job
from jobs.services import create_job
from jobs.tasks import demo_job


@pytest.fixture
def jobs(db, member, other_member):
    mine = demo_job(30, batch_size=10, user=member)  # queued: nothing runs without a cluster
    theirs = create_job("export", user=other_member)
    system = create_job("import_catalog", total=98)
    Job.objects.filter(pk=system.pk).update(status=Job.Status.SUCCEEDED, done=98)
    return {"mine": mine, "theirs": theirs, "system": system}


def test_page_lists_visible_jobs_with_progress_bars_and_filters(client, member, jobs):
    client.force_login(member)
    html = client.get("/jobs/").content.decode()
    assert f'<tr data-job="{jobs["mine"].pk}"' in html and f'<tr data-job="{jobs["system"].pk}"' in html
    assert f'<tr data-job="{jobs["theirs"].pk}"' not in html, "another member's job is hidden"
    assert 'role="progressbar"' in html and "98 / 98 (100.0%)" in html
    assert f'action="/jobs/{jobs["mine"].pk}/cancel/"' in html
    assert f'action="/jobs/{jobs["system"].pk}/cancel/"' not in html, "system jobs are managed by curators"
    assert "/jobs/status.json?ids=" in html, "the page polls for progress"

    html = client.get("/jobs/?kind=demo").content.decode()
    assert f'<tr data-job="{jobs["mine"].pk}"' in html and f'<tr data-job="{jobs["system"].pk}"' not in html
    html = client.get("/jobs/?status=succeeded").content.decode()
    assert f'<tr data-job="{jobs["system"].pk}"' in html and f'<tr data-job="{jobs["mine"].pk}"' not in html
    html = client.get("/jobs/?status=active").content.decode()
    assert f'<tr data-job="{jobs["mine"].pk}"' in html and f'<tr data-job="{jobs["system"].pk}"' not in html


def test_anonymous_visitors_see_no_jobs(client, jobs):
    html = client.get("/jobs/").content.decode()
    assert "sign in" in html and "<tr data-job=" not in html
    assert client.get("/jobs/status.json").json()["jobs"] == []
    assert client.get(f"/jobs/{jobs['mine'].pk}.json").status_code == 404


def test_polling_endpoint(client, member, curator, jobs):
    client.force_login(member)
    data = client.get(f"/jobs/status.json?ids={jobs['mine'].pk},{jobs['theirs'].pk}").json()
    assert [j["id"] for j in data["jobs"]] == [jobs["mine"].pk]
    row = data["jobs"][0]
    assert (row["status"], row["done"], row["total"], row["percent"]) == ("queued", 0, 30, 0.0)
    assert row["can_cancel"] and not row["can_retry"] and data["active"] == 1
    assert client.get("/jobs/status.json?ids=1,x").status_code == 400
    detail = client.get(f"/jobs/{jobs['system'].pk}.json").json()
    assert detail["percent"] == 100.0 and not detail["can_cancel"]
    client.force_login(curator)
    assert len(client.get("/jobs/status.json").json()["jobs"]) == 3


def test_cancel_and_retry_buttons(client, member, other_member, jobs):
    pk = jobs["mine"].pk
    client.force_login(other_member)
    assert client.post(f"/jobs/{pk}/cancel/").status_code == 403
    assert client.post(f"/jobs/{pk}/cancel/", HTTP_ACCEPT="application/json").status_code == 403
    client.force_login(member)
    assert client.get(f"/jobs/{pk}/cancel/").status_code == 405
    resp = client.post(f"/jobs/{pk}/cancel/", {"next": "/jobs/?kind=demo"})
    assert resp.status_code == 302 and resp["Location"] == "/jobs/?kind=demo"
    assert Job.objects.get(pk=pk).status == Job.Status.CANCELLED
    resp = client.post(f"/jobs/{pk}/cancel/", HTTP_ACCEPT="application/json")
    assert resp.status_code == 409 and "already ended" in resp.json()["error"]
    resp = client.post(f"/jobs/{pk}/retry/", {"next": "https://elsewhere.example/"})
    assert resp["Location"] == "/jobs/", "no open redirect"
    job = Job.objects.get(pk=pk)
    assert job.status == Job.Status.QUEUED and job.params["_generation"] == 2


def test_detail_page(client, member, jobs):
    client.force_login(member)
    html = client.get(f"/jobs/{jobs['mine'].pk}/").content.decode()
    assert "Job " in html and "demo_square" in html and "0 / 30" in html
    assert '"items"' not in html and "range" not in html, "the item list is not dumped on the page"
    assert client.get(f"/jobs/{jobs['theirs'].pk}/").status_code == 404
