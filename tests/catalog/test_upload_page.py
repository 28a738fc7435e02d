"""The upload page for members and the admin's "Add image": one store for page, admin and API,
size and format read from the file, fit and prediction queued through images_added."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import Image
from catalog.signals import images_added
from tests.factories import GalaxyFactory, png_bytes


@pytest.fixture
def queued():
    got = []

    def receiver(sender, image_ids, **kwargs):
        got.extend(image_ids)

    images_added.connect(receiver)
    yield got
    images_added.disconnect(receiver)


def test_member_uploads_several_files_with_one_refused(client, member, queued, django_capture_on_commit_callbacks):
    GalaxyFactory(pgc=1844)
    client.force_login(member)
    files = [
        SimpleUploadedFile("a.png", png_bytes(64)),
        SimpleUploadedFile("b.png", png_bytes(48, inc=50)),
        SimpleUploadedFile("x.txt", b"no"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            "/upload/", {"files": files, "pgc": 1844, "band": "r", "survey": "SDSS", "orientation": "unknown", "is_public": "on"}
        )
    body = r.content.decode()
    assert r.status_code == 400 and "refused" in body and body.count("stored:") == 2  # the bad file is named, the good ones kept
    sizes = sorted(Image.objects.filter(galaxy_id=1844).values_list("width", "height", "format"))
    assert sizes == [(48, 48, "png"), (64, 64, "png")]
    assert all(len(s) == 64 for s in Image.objects.values_list("sha256", flat=True))
    assert sorted(queued) == sorted(Image.objects.values_list("pk", flat=True))  # fit and prediction queued


def test_upload_page_needs_a_member(client, volunteer):
    assert client.get("/upload/").status_code == 302  # to the login page
    client.force_login(volunteer)
    assert client.get("/upload/").status_code == 403


def test_admin_add_image_reads_the_file(db, client, queued, django_capture_on_commit_callbacks):
    from tests.factories import UserFactory

    g = GalaxyFactory(pgc=2813)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get("/admin/catalog/image/add/").content.decode()
    assert 'name="upload"' in page and 'name="width"' not in page and 'name="format"' not in page
    data = {"galaxy": g.pk, "band": "g", "survey": "SDSS", "orientation": "unknown", "is_public": "on"}
    bad = client.post("/admin/catalog/image/add/", {**data, "upload": SimpleUploadedFile("x.png", b"not an image")})
    assert bad.status_code == 200 and not Image.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post("/admin/catalog/image/add/", {**data, "upload": SimpleUploadedFile("a.png", png_bytes(40))})
    assert r.status_code == 302, r.content.decode()[:2000]
    img = Image.objects.get()
    assert (img.width, img.height, img.format, img.galaxy_id) == (40, 40, "png", 2813) and len(img.sha256) == 64
    assert img.file.name.startswith("images/") and img.sha256 in img.file.name  # content-addressed store
    assert queued == [img.pk]


def test_header_brand_admin_link_and_favicon(client, member):
    login = client.get("/accounts/login/").content.decode()
    assert '<a class="brand" href="/">Galaxy Catalog</a>' in login and 'href="/admin/"' not in login
    assert "/static/favicon.svg" in login and "OpenNGC" in login and "CC BY-SA 4.0" in login
    client.force_login(member)
    home = client.get("/").content.decode()
    assert 'href="/upload/"' in home and 'href="/compare/"' in home and 'href="/admin/"' not in home
