import io

import pytest
from django.contrib.admin.sites import AdminSite
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from catalog.admin import GalaxyAdmin, ReleaseAdmin
from catalog.columns import derived_columns
from catalog.models import Galaxy, Release
from catalog.releases import ReleaseError, delete_draft, make_release, publish_release, visible_releases
from core.roles import MEMBER
from tests.factories import UserFactory
from tests.utils import read_votable, response_body, user_with_role


def test_release_freezes_query_result_and_values(edd_galaxies):
    release = make_release("CF4 test", "1.0", query={"inc_min": "80"}, columns="pgc,ra,dec,vhel,inc,type,fon", citation="Us 2026")
    expected = Galaxy.objects.filter(inc__gte=80, ra__isnull=False)
    assert release.row_count == expected.count() > 0
    assert release.columns == ["pgc", "ra", "dec", "vhel", "inc", "type", "fon"]
    g = expected.first()
    row = release.rows.get(galaxy=g)
    assert (row.ra, row.dec, row.healpix) == (g.ra, g.dec, g.healpix)
    assert row.values == {"vhel": g.vhel, "inc": g.inc, "type": g.type, "fon": g.fon}
    # later changes of the catalog do not reach the frozen rows
    Galaxy.objects.filter(pk=g.pk).update(vhel=1.0)
    row.refresh_from_db()
    assert row.values["vhel"] == g.vhel


def test_release_of_all_galaxies_with_every_column(edd_galaxies):
    release = make_release("All", "2", publish=True)
    assert release.row_count == 98 and release.is_published and release.published_at
    assert len(release.columns) == 140 + len(derived_columns())  # every EDD column and the derived ones


def test_published_release_is_immutable_and_names_unique(edd_galaxies):
    release = make_release("Frozen", "1", publish=True)
    with pytest.raises(ReleaseError, match="published"):
        publish_release(release)
    with pytest.raises(ReleaseError, match="published"):
        delete_draft(release)
    with pytest.raises(ReleaseError, match="exists already"):
        make_release("Frozen", "1")
    with pytest.raises(ReleaseError, match="unknown column"):
        make_release("Other", "1", columns="pgc,bogus")
    with pytest.raises(ReleaseError, match="invalid query"):
        make_release("Other", "1", query={"inc_min": "steep"})
    assert Release.objects.count() == 1  # bad input wrote nothing


def test_release_downloads_in_every_format(client, edd_galaxies):
    from astropy.io import fits
    from astropy.table import Table

    make_release("Public", "1", columns="pgc,ra,dec,vhel,type,fon,inc_flg", citation="Cite me", publish=True)
    r = client.get("/releases/public-v1/download.csv")
    text = response_body(r).decode()
    assert r.status_code == 200 and "# citation: Cite me" in text and "# release: Public v1 (public-v1)" in text
    lines = text.splitlines()
    n_header = sum(ln.startswith("#") for ln in lines)
    # the '#' provenance header is one block at the top, followed by the column names
    assert n_header > 0 and all(ln.startswith("#") for ln in lines[:n_header])
    data_lines = lines[n_header:]
    assert data_lines[0] == "pgc,ra,dec,vhel,type,fon,inc_flg" and len(data_lines) == 99
    t = read_votable(response_body(client.get("/releases/public-v1/download.votable"))).to_table()
    g = Galaxy.objects.get(pgc=int(t["pgc"][0]))
    assert t["vhel"][0] == g.vhel and bool(t["fon"][0]) == g.fon
    data = response_body(client.get("/releases/public-v1/download.fits?columns=pgc,vhel"))
    assert Table.read(io.BytesIO(data)).colnames == ["pgc", "vhel"]
    with fits.open(io.BytesIO(data)) as h:
        assert any("Cite me" in str(c) for c in h[0].header["COMMENT"])
    r = client.get("/releases/public-v1/download.csv?columns=pgc,inc")
    assert r.status_code == 400 and "not available in release public-v1" in r.content.decode()
    page = client.get("/releases/")
    assert b"public-v1" in page.content and b"98" in page.content
    assert client.get("/releases/public-v1/").status_code == 200


def test_private_releases_are_for_members_only(client, edd_galaxies):
    make_release("Secret", "1", is_public=False, publish=True)
    make_release("Draft", "1")
    anon = client.get("/releases/")
    assert b"secret-v1" not in anon.content and b"draft-v1" not in anon.content
    assert client.get("/releases/secret-v1/download.csv").status_code == 404
    assert client.get("/releases/secret-v1/").status_code == 404
    assert client.get("/scs/secret-v1/?RA=0&DEC=0&SR=1").status_code == 404
    member = user_with_role(MEMBER, "member1")
    client.force_login(member)
    assert client.get("/releases/secret-v1/download.csv").status_code == 200
    assert client.get("/releases/draft-v1/").status_code == 404  # drafts are for curators
    assert [r.slug for r in visible_releases(member)] == ["secret-v1"]


def test_make_release_and_export_table_commands(edd_galaxies, tmp_path):
    out = io.StringIO()
    call_command(
        "make_release", "--name", "Cmd", "--ver", "1.0", "--query", "vhel_max=5000", "--columns", "pgc,vhel", "--publish", stdout=out
    )
    release = Release.objects.get(slug="cmd-v1-0")
    assert release.row_count == Galaxy.objects.filter(vhel__lte=5000).count() and "published" in out.getvalue()
    path = tmp_path / "cmd.csv"
    call_command("export_table", "--release", "cmd-v1-0", "--format", "csv", "--output", str(path), verbosity=0)
    assert len([ln for ln in path.read_text().splitlines() if not ln.startswith("#")]) == release.row_count + 1
    from jobs.models import Job

    job = Job.objects.get(kind="export_table")
    assert job.status == Job.Status.SUCCEEDED and job.result["bytes"] == path.stat().st_size
    with pytest.raises(CommandError, match="exists already"):
        call_command("make_release", "--name", "Cmd", "--ver", "1.0")
    with pytest.raises(CommandError, match="unknown column"):
        call_command("export_table", "--query", "inc_min=80", "--columns", "pgc,zzz", "--output", str(tmp_path / "x.csv"))


def test_admin_actions_freeze_and_publish(edd_galaxies, rf: RequestFactory):
    admin_user = UserFactory(username="boss", is_staff=True, is_superuser=True)
    request = rf.post("/admin/")
    request.user = admin_user
    messages = []
    galaxy_admin = GalaxyAdmin(Galaxy, AdminSite())
    galaxy_admin.message_user = lambda req, msg, *a, **k: messages.append(str(msg))
    galaxy_admin.actions[0](galaxy_admin, request, Galaxy.objects.filter(pgc__in=[2, 4, 12]))
    release = Release.objects.get()
    assert release.row_count == 3 and not release.is_published and release.created_by == admin_user
    release_admin = ReleaseAdmin(Release, AdminSite())
    release_admin.message_user = lambda req, msg, *a, **k: messages.append(str(msg))
    release_admin.actions[0](release_admin, request, Release.objects.all())
    release.refresh_from_db()
    assert release.is_published
    assert "slug" in release_admin.get_readonly_fields(request, release)
    assert not release_admin.has_delete_permission(request, release)


def test_database_refuses_changes_to_a_published_release(edd_galaxies):
    from django.db import IntegrityError, connection, transaction

    from catalog.models import ReleaseRow

    release = make_release("Sealed", "1", publish=True)
    row = ReleaseRow.objects.filter(release=release).first()
    with pytest.raises(IntegrityError, match="frozen"), transaction.atomic():
        ReleaseRow.objects.filter(pk=row.pk).update(values={"pgc": 1})
    with pytest.raises(IntegrityError, match="frozen"), transaction.atomic():
        ReleaseRow.objects.filter(pk=row.pk).delete()
    with pytest.raises(IntegrityError, match="frozen"), transaction.atomic():
        ReleaseRow.objects.create(release=release, galaxy_id=4, values={})
    with pytest.raises(IntegrityError, match="cannot change"), transaction.atomic():
        Release.objects.filter(pk=release.pk).update(query={"inc_min": 1})
    with pytest.raises(IntegrityError, match="published"), transaction.atomic():
        Release.objects.filter(pk=release.pk).delete()  # Django deletes the rows first: refused
    with pytest.raises(IntegrityError, match="cannot be deleted"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM catalog_release WHERE id = %s", [release.pk])
    Release.objects.filter(pk=release.pk).update(citation="Corrected citation line")  # prose may be fixed
    assert ReleaseRow.objects.filter(release=release).count() == release.row_count
    draft = make_release("Draft", "1")
    delete_draft(draft)
    assert not Release.objects.filter(pk=draft.pk).exists()
