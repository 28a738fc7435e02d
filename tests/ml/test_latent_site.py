"""The latent space in the catalog: pgvector migration check, registry, embeddings per image and
version, similar galaxies (self and sky neighbours dropped, private images never shown), "more
like this", outliers and verdicts, the map, the nightly sweep and the new-image pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from catalog.models import Image
from ml.latent_services import (
    embed_and_store,
    latent_model_for,
    latent_sweep,
    map_points,
    missing_image_ids,
    nearest,
    outliers,
    record_verdict,
    similar,
    similar_to_image,
)
from ml.models import ImageEmbedding, LatentDensity, ModelVersion, OutlierVerdict
from ml.services import active_latent_version, read_image_field, register_latent, register_weights
from ml.tasks import embed_images
from ml.vectors import CreateVectorExtension, PgvectorMissing, hnsw_index_name, require_pgvector
from tests.factories import GalaxyFactory, make_image, png_bytes
from tests.ml.latent_makers import make_latent_weights

pytestmark = pytest.mark.django_db

#: 30 arcsec in degrees: a positional duplicate (inside the 100 arcsec exclusion).
CLOSE = 30.0 / 3600.0


@pytest.fixture
def latent(tmp_path):
    """A registered, active latent version (small untrained model)."""
    return register_latent(make_latent_weights(tmp_path / "latent"))


@pytest.fixture
def sky(latent):
    """Galaxy A (inc 70) with B 30 arcsec away and C far away showing the same pixels, D and E
    different disks, P far away with the same pixels as A but private; all embedded."""
    a = GalaxyFactory(pgc=1001, ra=150.0, dec=20.0)
    b = GalaxyFactory(pgc=1002, ra=150.0 + CLOSE, dec=20.0)
    c = GalaxyFactory(pgc=1003, ra=30.0, dec=-10.0)
    d = GalaxyFactory(pgc=1004, ra=200.0, dec=5.0)
    e = GalaxyFactory(pgc=1005, ra=250.0, dec=45.0)
    p = GalaxyFactory(pgc=1006, ra=100.0, dec=-40.0)
    for g, inc in ((a, 70.0), (b, 70.0), (c, 70.0), (d, 35.0), (e, 88.0), (p, 70.0)):
        make_image(g, "g", inc=inc)
    Image.objects.filter(galaxy=p).update(is_public=False)
    embed_and_store(Image.objects.values_list("pk", flat=True), latent)
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "p": p}


# ---------------------------------------------------------------------------------------------
# The migration's pgvector check
# ---------------------------------------------------------------------------------------------
def _pretend_extensions(sql_filter: str, version: str | None = None) -> None:
    """In this test's transaction, pg_available_extensions answers as a server would that lacks
    pgvector (or has an old one): a view of that name ahead of pg_catalog on the search path."""
    with connection.cursor() as cur:
        cur.execute("CREATE SCHEMA pretend")
        cols = f"'{version}'::text AS default_version, NULL::text AS installed_version" if version else "default_version, installed_version"
        cur.execute(
            f"CREATE VIEW pretend.pg_available_extensions AS SELECT name, {cols} FROM pg_catalog.pg_available_extensions {sql_filter}"
        )
        cur.execute("SET LOCAL search_path = pretend, pg_catalog, public")


def test_the_embedded_server_offers_pgvector_and_the_migration_creates_it():
    with connection.cursor() as cur:
        version = require_pgvector(cur)
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cur.fetchone()[0] == version
    assert tuple(int(p) for p in version.split(".")) >= (0, 5, 0)


def test_the_migration_refuses_cleanly_without_pgvector():
    from django.db.migrations.loader import MigrationLoader

    migration = MigrationLoader(connection).get_migration("ml", "0003_latent")
    assert isinstance(migration.operations[0], CreateVectorExtension)
    with transaction.atomic():
        _pretend_extensions("WHERE name <> 'vector'")
        with connection.cursor() as cur:
            with pytest.raises(PgvectorMissing) as err:
                require_pgvector(cur)
        message = str(err.value)
        assert "no pgvector extension" in message and "Install pgvector" in message and "CREATE EXTENSION vector" in message
        with connection.schema_editor(atomic=False) as editor, pytest.raises(PgvectorMissing):
            migration.operations[0].database_forwards("ml", editor, None, None)
        transaction.set_rollback(True)


def test_the_migration_refuses_a_pgvector_without_hnsw():
    with transaction.atomic():
        _pretend_extensions("WHERE name = 'vector'", version="0.4.4")
        with connection.cursor() as cur, pytest.raises(PgvectorMissing, match="0.4.4; HNSW indexes need 0.5.0"):
            require_pgvector(cur)
        transaction.set_rollback(True)


# ---------------------------------------------------------------------------------------------
# Registry and storage
# ---------------------------------------------------------------------------------------------
def test_register_latent_records_the_model_and_builds_its_hnsw_index(latent, tmp_path):
    assert latent.task == ModelVersion.Task.LATENT and latent.active and latent.embedding_dim == 16
    assert set(latent.files) == {"vae.pt", "space.json"}
    assert active_latent_version() == latent
    with connection.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [hnsw_index_name(latent.pk)])
        (definition,) = cur.fetchone()
    assert "USING hnsw" in definition and "vector_cosine_ops" in definition and f"model_version_id = {latent.pk}" in definition
    # register_model (register_weights) of a latent directory goes the same way; another model replaces it as active
    other = register_weights(make_latent_weights(tmp_path / "other", name="latent-other", seed=1))
    assert other.task == ModelVersion.Task.LATENT and other.embedding_dim == 16
    assert active_latent_version() == other
    assert not ModelVersion.objects.get(pk=latent.pk).active


def test_embeddings_are_stored_once_per_image_and_version(latent, tmp_path):
    g = GalaxyFactory()
    ids = [make_image(g, band, inc=inc).pk for band, inc in (("g", 60.0), ("r", 80.0))]
    assert embed_images(ids, model_version_id=latent.pk) == {"stored": 2, "skipped": 0}
    first = dict(ImageEmbedding.objects.values_list("image_id", "pk"))
    embed_images(ids, model_version_id=latent.pk)  # a re-run updates the rows
    assert dict(ImageEmbedding.objects.values_list("image_id", "pk")) == first
    other = register_latent(make_latent_weights(tmp_path / "v2", name="latent-v2", seed=2))
    embed_images(ids)  # the active version, now v2
    assert ImageEmbedding.objects.count() == 4
    assert ImageEmbedding.objects.filter(model_version=other).count() == 2
    row = ImageEmbedding.objects.filter(model_version=other).first()
    assert np.linalg.norm(np.asarray(row.embedding)) == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite([row.recon_error, row.outlier_score, row.map_x, row.map_y]).all()
    with pytest.raises(IntegrityError), transaction.atomic():
        ImageEmbedding.objects.create(
            image_id=row.image_id,
            galaxy_id=g.pk,
            model_version=other,
            embedding=row.embedding,
            recon_error=0,
            outlier_score=0,
            map_x=0,
            map_y=0,
        )
    assert missing_image_ids(other) == []


def test_unreadable_images_are_skipped_and_counted(latent):
    g = GalaxyFactory()
    good = make_image(g, "g")
    bad = make_image(g, "r", inc=50.0)
    with bad.file.open("wb") as fh:
        fh.write(b"not an image")
    assert embed_and_store([good.pk, bad.pk], latent) == {"stored": 1, "skipped": 1, "model_version": latent.pk}


def test_the_index_search_matches_exact_search(latent, sky):
    vec = np.asarray(ImageEmbedding.objects.get(galaxy=sky["d"]).embedding, dtype=np.float32)
    got = nearest(vec, latent.pk, latent.embedding_dim, limit=6)
    rows = ImageEmbedding.objects.filter(model_version=latent).values_list("image_id", "embedding")
    exact = sorted((1.0 - float(np.dot(vec, np.asarray(e))), i) for i, e in rows)
    assert [g[0] for g in got] == [i for _, i in exact]
    assert got[0][2] == pytest.approx(0.0, abs=1e-5)


def test_the_search_runs_with_its_ef_search(latent, sky):
    vec = np.asarray(ImageEmbedding.objects.get(galaxy=sky["d"]).embedding, dtype=np.float32)
    nearest(vec, latent.pk, latent.embedding_dim, limit=3, ef_search=123)
    with connection.cursor() as cur:
        cur.execute("SHOW hnsw.ef_search")
        assert cur.fetchone()[0] == "123"
    nearest(vec, latent.pk, latent.embedding_dim, limit=500)  # more than ef_search: raised to the limit
    with connection.cursor() as cur:
        cur.execute("SHOW hnsw.ef_search")
        assert cur.fetchone()[0] == "500"


# ---------------------------------------------------------------------------------------------
# Similar galaxies and "more like this"
# ---------------------------------------------------------------------------------------------
def test_similar_drops_the_galaxy_itself_and_its_sky_neighbours(client, sky):
    r = client.get(reverse("galaxy-similar-list", kwargs={"pgc": 1001}), {"k": 3})
    assert r.status_code == 200, r.content
    body = r.json()
    pgcs = [n["pgc"] for n in body["neighbours"]]
    assert 1001 not in pgcs and 1002 not in pgcs  # itself, and B 30 arcsec away with the same pixels
    assert pgcs[0] == 1003 and body["neighbours"][0]["distance"] == pytest.approx(0.0, abs=1e-5)
    assert len(pgcs) == 3 and body["k"] == 3
    distances = [n["distance"] for n in body["neighbours"]]
    assert distances == sorted(distances)
    assert body["neighbours"][0]["image_url"].startswith("/media/")


def test_similar_never_shows_private_images_to_outsiders(client, sky, member):
    url = reverse("galaxy-similar-list", kwargs={"pgc": 1001})
    anonymous = [n["pgc"] for n in client.get(url, {"k": 5}).json()["neighbours"]]
    assert 1006 not in anonymous
    # the private galaxy's own embedding is not used to answer an outsider either
    assert client.get(reverse("galaxy-similar-list", kwargs={"pgc": 1006})).json()["neighbours"] == []
    client.force_login(member)
    members = [n["pgc"] for n in client.get(url, {"k": 5}).json()["neighbours"]]
    assert 1006 in members
    assert 1006 not in [p for p in map_points(None)["pgc"]]
    assert 1006 in map_points(member)["pgc"]


def test_similar_answers_bad_requests_with_4xx(client, sky):
    url = reverse("galaxy-similar-list", kwargs={"pgc": 1001})
    for k in ("0", "abc", "101"):
        r = client.get(url, {"k": k})
        assert r.status_code == 400 and "k" in r.json()["errors"], (k, r.content)
    assert client.get(reverse("galaxy-similar-list", kwargs={"pgc": 424242})).status_code == 404


def test_an_identical_image_is_its_own_nearest_neighbour(client, sky):
    d = Image.objects.get(galaxy=sky["d"])
    out = similar_to_image(read_image_field(d), 3, None)
    assert out["neighbours"][0]["pgc"] == 1004 and out["neighbours"][0]["image_id"] == d.pk
    assert out["neighbours"][0]["distance"] == pytest.approx(0.0, abs=1e-5)
    # the same through the API: POST the file's bytes
    with d.file.open("rb") as fh:
        r = client.post(reverse("more-like-this-list"), {"file": fh, "k": "2"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["neighbours"][0]["pgc"] == 1004 and body["neighbours"][0]["distance"] == pytest.approx(0.0, abs=1e-5)
    assert len(body["neighbours"]) == 2 and np.isfinite(body["outlier_score"])


def test_more_like_this_goes_through_the_upload_checks(client, sky, settings):
    url = reverse("more-like-this-list")
    r = client.post(url, {"file": _named(b"not an image", "x.png")})
    assert r.status_code == 400 and "file" in r.json()["errors"]
    settings.GALCAT_UPLOAD_MAX_PIXELS = 32 * 32
    r = client.post(url, {"file": _named(png_bytes(64), "big.png")})
    assert r.status_code == 400 and "exceeds the limit" in r.content.decode()
    settings.GALCAT_API_THROTTLE_INFERENCE = "1/min"
    from django.core.cache import cache

    cache.clear()
    settings.GALCAT_UPLOAD_MAX_PIXELS = 3072 * 3072
    assert client.post(url, {"file": _named(png_bytes(64), "a.png")}).status_code == 200
    assert client.post(url, {"file": _named(png_bytes(64), "a.png")}).status_code == 429
    cache.clear()


def _named(data: bytes, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="image/png")


def test_similar_of_a_galaxy_without_embeddings_is_empty(latent):
    g = GalaxyFactory()
    assert similar(g.pk, 5, None)["neighbours"] == []


# ---------------------------------------------------------------------------------------------
# Outliers, verdicts, browse, the map
# ---------------------------------------------------------------------------------------------
def test_outliers_are_listed_highest_first_for_curators_only(client, sky, member, curator):
    url = reverse("ml:outliers")
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(member)
    assert client.get(url).status_code == 403
    client.force_login(curator)
    r = client.get(url)
    assert r.status_code == 200
    rows = outliers(curator)["rows"]
    scores = [row["embedding"].outlier_score for row in rows]
    assert scores == sorted(scores, reverse=True) and len(rows) == 6
    assert f'id="image-{rows[0]["image"].pk}"' in r.content.decode()
    assert 1006 not in [row["galaxy_id"] for row in outliers(None)["rows"]]  # private stays private


def test_a_curators_verdict_is_stored_and_shown(client, sky, curator, member):
    image = Image.objects.get(galaxy=sky["e"])
    client.force_login(member)
    assert client.post(reverse("ml:outlier-verdict"), {"image": image.pk, "verdict": "artefact"}).status_code == 403
    client.force_login(curator)
    r = client.post(
        reverse("ml:outlier-verdict"), {"image": image.pk, "verdict": "interesting", "note": "ring?", "next": "/latent/outliers/"}
    )
    assert r.status_code == 302 and r["Location"] == f"/latent/outliers/#image-{image.pk}"
    v = OutlierVerdict.objects.get()
    assert (v.verdict, v.user, v.note, v.galaxy_id) == ("interesting", curator, "ring?", 1005)
    assert v.outlier_score == pytest.approx(ImageEmbedding.objects.get(image=image).outlier_score)
    assert client.post(reverse("ml:outlier-verdict"), {"image": image.pk, "verdict": "maybe"}).status_code == 400
    record_verdict(image.pk, "normal", curator)
    page = client.get(reverse("ml:outliers")).content.decode()
    assert "Verdict: <strong>normal</strong>" in page
    unreviewed = client.get(reverse("ml:outliers"), {"unreviewed": "1"}).content.decode()
    assert f'id="image-{image.pk}"' not in unreviewed


def test_browse_sorts_and_filters_by_outlier_score(client, sky):
    top = max(ImageEmbedding.objects.filter(image__is_public=True), key=lambda e: e.outlier_score)
    r = client.get("/api/v1/galaxies/", {"fields": "pgc,outlier_score", "ordering": "-outlier_score", "format": "json"})
    assert r.status_code == 200, r.content
    rows = r.json()["results"]
    assert rows[0]["pgc"] == top.galaxy_id and rows[0]["outlier_score"] == pytest.approx(top.outlier_score)
    public = ImageEmbedding.objects.filter(image__is_public=True)  # an anonymous client sees these alone
    cut = sorted(e.outlier_score for e in public)[2]
    r = client.get("/api/v1/galaxies/", {"fields": "pgc,outlier_score", "outlier_score_min": cut, "format": "json"})
    assert {row["pgc"] for row in r.json()["results"]} == set(public.filter(outlier_score__gte=cut).values_list("galaxy_id", flat=True))


def test_the_map_page_and_its_colours(client, sky):
    r = client.get(reverse("ml:latent-map"), {"colour": "outlier_score"})
    assert r.status_code == 200
    page = r.content.decode()
    assert 'id="latent-data"' in page and "plotly" in page
    data = map_points(None, "consensus_inc")
    assert len(data["pgc"]) == 5 and data["value"] == [None] * 5
    assert client.get(reverse("ml:latent-map"), {"colour": "nonsense"}).status_code == 400


def test_the_galaxy_page_shows_the_similar_strip(client, sky):
    page = client.get(reverse("catalog:galaxy-detail", kwargs={"pgc": 1001})).content.decode()
    assert 'id="similar-strip"' in page
    strip = page.split('id="similar-strip"')[1].split("</ol>")[0]
    assert "PGC 1003" in strip and "PGC 1002" not in strip and "PGC 1006" not in strip


# ---------------------------------------------------------------------------------------------
# Workers: the new-image pipeline and the nightly sweep
# ---------------------------------------------------------------------------------------------
def test_new_images_reach_the_embedding_step_and_the_sweep_is_nightly(settings):
    from catalog.signals import image_steps

    assert "ml.tasks.embed_images" in [path for path, _, _ in image_steps([1])]
    assert "ml.tasks.latent_sweep" in settings.GALCAT_NIGHTLY_TASKS


def test_the_nightly_sweep_embeds_missing_images_and_refits_the_density(latent):
    rng = np.random.default_rng(3)
    for k in range(45):
        make_image(GalaxyFactory(), "g", inc=float(rng.uniform(20, 90)) + k * 1e-3)
    assert len(missing_image_ids(latent)) == 45
    before = dict(ImageEmbedding.objects.values_list("image_id", "outlier_score"))
    out = latent_sweep()
    assert out["embedded"] == 45 and out["refit"] is True and out["images"] == 45
    assert missing_image_ids(latent) == []
    fit = LatentDensity.objects.get(model_version=latent)
    assert fit.images == 45 and fit.state["n_fit"] == 45
    assert before == {}
    # the stored scores are the refit density's, as every process loads it from the database
    rows = list(ImageEmbedding.objects.order_by("pk").values_list("embedding", "recon_error", "outlier_score"))
    model = latent_model_for(ModelVersion.objects.get(pk=latent.pk))
    assert model.density_state() == fit.state
    emb = np.stack([np.asarray(r[0], dtype=np.float32) for r in rows])
    rescored = model.score_embeddings(emb, np.array([r[1] for r in rows], dtype=np.float32))
    assert np.allclose([r[2] for r in rows], rescored, rtol=1e-5, atol=1e-6)


def test_the_sweep_keeps_the_shipped_density_with_too_few_images(latent):
    make_image(GalaxyFactory(), "g")
    out = latent_sweep()
    assert out["embedded"] == 1 and out["refit"] is False
    assert not LatentDensity.objects.exists()


def test_the_sample_of_make_run_gets_embeddings_from_the_shipped_model(settings, shared_data, django_capture_on_commit_callbacks):
    """load_sample's images go through the image pipeline to embed_images, which registers the
    shipped model (ml/weights/latent); the pages then have neighbours to show."""
    from catalog.sample import load_sample
    from jobs.triggers import flush_due
    from ml.weights_files import LATENT_WEIGHTS_DIR

    settings.GALCAT_TASKS_SYNC = True
    settings.GALCAT_IMAGE_PIPELINE = ["ml.tasks.embed_images"]
    settings.GALCAT_SAMPLE_HOOKS = []
    with django_capture_on_commit_callbacks(execute=True):
        load_sample(say=lambda *args: None)
    flush_due(force=True)
    mv = active_latent_version()
    assert mv is not None and mv.weights_path == "ml/weights/latent" and (LATENT_WEIGHTS_DIR / "ensemble.json").exists()
    assert ImageEmbedding.objects.filter(model_version=mv).count() == Image.objects.count() == 40
    out = similar(44182, 5, None)
    assert len(out["neighbours"]) == 5 and 44182 not in [n["pgc"] for n in out["neighbours"]]


def test_the_api_schema_lists_the_latent_endpoints(client):
    import yaml
    from openapi_spec_validator import validate

    schema = yaml.safe_load(client.get("/api/schema/").content)
    validate(schema)
    similar_get = schema["paths"]["/api/v1/galaxies/{pgc}/similar/"]["get"]
    assert {p["name"] for p in similar_get["parameters"]} >= {"pgc", "k"}
    post = schema["paths"]["/api/v1/similar/"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
