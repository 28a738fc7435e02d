"""Morphology posteriors in the catalog: shipped weights, registry, worker storage, page, API, fit --init cnn."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from fitting.models import FitResult
from ml.conf import conf
from ml.models import ModelVersion, MorphologyPosterior
from ml.morph.nets import MorphNet
from ml.morph.posterior import load_nets
from ml.morph.targets import TARGETS
from ml.morph.train import CAL_SEED, TEST_SEED, TrainConfig, save_net
from ml.services import active_version, morph_nets_for, register_weights
from ml.tasks import morph_images
from ml.weights_files import MORPH_WEIGHTS_DIR, WeightsChecksumError, sha256_file
from tests.factories import GalaxyFactory, make_image
from tests.ml.makers import make_weights

pytestmark = pytest.mark.django_db


def make_morph_weights(directory):
    """Small untrained networks of both kinds, with manifest and card (fast to run)."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(width=8)
    members = []
    for kind in TARGETS:
        sha = save_net(MorphNet(TARGETS[kind], width=8), kind, cfg, directory)
        members.append({"file": f"{kind}.pt", "sha256": sha, "kind": kind})
    (directory / "ensemble.json").write_text(
        json.dumps({"name": "morph-test", "task": "morphology", "architecture": "test", "members": members})
    )
    (directory / "model_card.json").write_text(json.dumps({"command": "test", "members": []}))
    return directory


@pytest.fixture
def morph_version(tmp_path):
    return register_weights(make_morph_weights(tmp_path / "morph"), version="t1")


@pytest.fixture
def galaxy():
    g = GalaxyFactory(pgc=5151)
    make_image(g, "g", inc=70.0, size=96)
    make_image(g, "r", inc=70.0, size=64)
    return g


def test_shipped_morphology_weights_match_their_manifest_and_card():
    manifest = json.loads((MORPH_WEIGHTS_DIR / "ensemble.json").read_text())
    card = json.loads((MORPH_WEIGHTS_DIR / "model_card.json").read_text())
    assert manifest["task"] == "morphology"
    assert {m["kind"] for m in manifest["members"]} == {"sersic", "bulge_disk"}
    for m in manifest["members"]:
        assert sha256_file(MORPH_WEIGHTS_DIR / m["file"]) == m["sha256"]
    assert card["command"].startswith("python manage.py train_morphology")
    assert [m["sha256"] for m in card["members"]] == [m["sha256"] for m in manifest["members"]]
    assert (MORPH_WEIGHTS_DIR / "EVALUATION.md").exists() and (MORPH_WEIGHTS_DIR / "MODEL_CARD.md").exists()
    assert sum(f.stat().st_size for f in MORPH_WEIGHTS_DIR.iterdir()) < 5 * 2**20
    nets = load_nets(MORPH_WEIGHTS_DIR)
    assert set(nets) == {"sersic", "bulge_disk"}
    # the posterior calibration ships, checked like the weights, made by the command on its own seed,
    # for the passes of the bench and the fitter's start values (1) and of the worker (GALCAT_MORPH_PASSES)
    assert sha256_file(MORPH_WEIGHTS_DIR / manifest["calibration"]["file"]) == manifest["calibration"]["sha256"]
    cal = json.loads((MORPH_WEIGHTS_DIR / "calibration.json").read_text())
    assert cal["command"].startswith("python manage.py evaluate_morphology") and "--calibrate" in cal["command"]
    assert cal["seed"] == CAL_SEED != TEST_SEED
    for net in nets.values():
        assert {(side, p) for side in (64, 128) for p in (1, int(conf.MORPH_PASSES))} <= set(net.posterior_calibration)
    assert card["posterior_calibration"]["sha256"] == manifest["calibration"]["sha256"]
    assert "## Posterior calibration" in (MORPH_WEIGHTS_DIR / "MODEL_CARD.md").read_text()


def test_the_bench_applies_the_shipped_calibration():
    from ml.morph.bench import run
    from ml.morph.render import MorphConfig, render_set

    d = render_set(MorphConfig(size=64, n=8, chunk=8, seed=5, neighbour_prob=0.0))
    out = run({"images": d["images"], "sigma": d["sigma"], "psf": d["psfs"][0]}, draws=200)
    assert bool(out["calibrated"]) and out["params"].shape == (8, 7) and out["lo"].shape == (8, 7, 3)
    assert (out["lo"][..., 0] <= out["params"]).all() and (out["params"] <= out["hi"][..., 0]).all()


def test_a_morphology_version_leaves_the_inclination_version_active(morph_version, tmp_path):
    incl = register_weights(make_weights(tmp_path / "w", members=1), name="incl", version="1")
    other = register_weights(make_morph_weights(tmp_path / "morph2"), version="t2")
    incl.refresh_from_db()
    morph_version.refresh_from_db()
    assert incl.active and other.active and not morph_version.active
    assert active_version() == incl
    assert morph_version.task == ModelVersion.Task.MORPHOLOGY


def test_worker_stores_one_row_per_image_version_and_kind(morph_version, galaxy):
    ids = list(galaxy.images.values_list("pk", flat=True))
    out = morph_images(ids, model_version_id=morph_version.pk)
    assert out == {"stored": 4, "skipped": 0}
    morph_images(ids, model_version_id=morph_version.pk)  # a re-run updates
    rows = MorphologyPosterior.objects.filter(model_version=morph_version)
    assert rows.count() == 4
    assert sorted(rows.values_list("kind", flat=True)) == ["bulge_disk", "bulge_disk", "sersic", "sersic"]
    r = rows.get(kind="sersic", image_id=ids[0])
    assert r.names == ["x", "y", "flux", "re", "n", "q", "theta"]
    for name in r.names:
        (lo1, hi1), (lo2, hi2), (lo3, hi3) = r.intervals[name]
        assert lo3 <= lo2 <= lo1 <= hi1 <= hi2 <= hi3
    assert len(r.histograms) == 7 and sum(r.histograms[0]["counts"]) > 0.99 * r.draws
    assert r.passes > 1 and r.re is not None and r.re > 0
    assert len(r.target_covariance) == 7


def test_wrong_sha256_of_a_registered_version_refuses_to_load(morph_version):
    morph_version.files = {**morph_version.files, "sersic.pt": "0" * 64}
    morph_version.save()
    with pytest.raises(WeightsChecksumError):
        morph_nets_for(morph_version)


def test_galaxy_page_and_api_show_the_posterior(morph_version, galaxy, client):
    from fitting.services import fit_and_store

    ids = list(galaxy.images.values_list("pk", flat=True))
    morph_images(ids, model_version_id=morph_version.pk)
    fit_and_store(ids[:1], FitResult.Kind.SERSIC, init="moments")
    html = client.get(reverse("catalog:galaxy-detail", args=[galaxy.pgc])).content.decode()
    assert 'id="morph-panel"' in html and 'id="morph-data"' in html and "morph-test" in html
    plots = json.loads(html.split('<script id="morph-data" type="application/json">')[1].split("</script>")[0])
    assert len(plots) == 4
    sersic = [p for p in plots if p["names"][0] == "x" and "n" in p["names"]]
    assert any(p["lm"] for p in sersic)  # the LM fit's interval beside the posterior
    assert any(p["ellipse"] for p in plots)  # B/T and re ellipse of the bulge+disk rows
    body = client.get(f"/api/v1/morphology/?pgc={galaxy.pgc}").json()
    assert len(body["results"]) == 4 and "intervals" in body["results"][0]
    one = client.get(f"/api/v1/morphology/{body['results'][0]['id']}/").json()
    assert one["median"] == body["results"][0]["median"]


def test_posterior_in_the_galaxy_detail_api_browse_columns_and_downloads(morph_version, galaxy, client):
    from catalog.models import Image
    from tests.utils import response_body

    ids = list(galaxy.images.order_by("pk").values_list("pk", flat=True))
    morph_images(ids, model_version_id=morph_version.pk)
    rows = MorphologyPosterior.objects.filter(model_version=morph_version)
    re = sorted(rows.filter(kind="sersic").values_list("re", flat=True))
    bt = sorted(rows.filter(kind="bulge_disk").values_list("bt", flat=True))
    # the detail lists the posteriors of the images the caller may see, with their intervals
    detail = client.get(f"/api/v1/galaxies/{galaxy.pgc}/").json()
    assert sorted((m["image"], m["kind"]) for m in detail["morphology"]) == sorted((i, k) for i in ids for k in ("sersic", "bulge_disk"))
    assert all(set(m["intervals"]) == set(m["names"]) for m in detail["morphology"])
    Image.objects.filter(pk=ids[1]).update(is_public=False)
    hidden = client.get(f"/api/v1/galaxies/{galaxy.pgc}/").json()["morphology"]
    assert {m["image"] for m in hidden} == {ids[0]}
    # browse/API columns: medians over the galaxy's public images (here the one left), filterable
    row = client.get("/api/v1/galaxies/", {"fields": "pgc,morph_re,morph_re_e,morph_n,morph_q,morph_bt"}).json()["results"][0]
    public = rows.filter(image_id=ids[0])
    assert len(re) == len(bt) == 2  # both images have posteriors; only the public one counts
    assert row["morph_re"] == pytest.approx(public.get(kind="sersic").re, rel=1e-6)
    assert row["morph_bt"] == pytest.approx(public.get(kind="bulge_disk").bt, rel=1e-6)
    assert row["morph_re_e"] > 0 and 0 < row["morph_q"] <= 1 and row["morph_n"] > 0
    found = client.get("/api/v1/galaxies/", {"fields": "pgc", "morph_re_min": min(re) / 2}).json()["results"]
    none = client.get("/api/v1/galaxies/", {"fields": "pgc", "morph_re_min": max(re) * 2}).json()["results"]
    assert [g["pgc"] for g in found] == [galaxy.pgc] and none == []
    csv = response_body(client.get("/galaxies/download.csv", {"columns": "pgc,morph_re,morph_bt"})).decode()
    header = next(line for line in csv.splitlines() if line and not line.startswith("#"))
    assert header.split(",") == ["pgc", "morph_re", "morph_bt"]
    values = csv.strip().splitlines()[-1].split(",")
    assert (
        int(values[0]) == galaxy.pgc
        and float(values[1]) == pytest.approx(row["morph_re"])
        and float(values[2]) == pytest.approx(row["morph_bt"])
    )
    ModelVersion.objects.filter(pk=morph_version.pk).update(active=False)  # only the active version counts
    row = client.get("/api/v1/galaxies/", {"fields": "pgc,morph_re"}).json()["results"][0]
    assert row["morph_re"] is None and client.get(f"/api/v1/galaxies/{galaxy.pgc}/").json()["morphology"] == []


def test_fit_init_cnn_uses_the_network_and_refuses_without_one(morph_version, galaxy):
    call_command("fit", "--pgc", str(galaxy.pgc), "--init", "moments", "--no-progress")
    import io

    out = io.StringIO()
    call_command("fit", "--pgc", str(galaxy.pgc), "--init", "cnn", "--no-progress", stdout=out)
    assert "from the network 2" in out.getvalue()
    assert FitResult.objects.filter(image__galaxy=galaxy).count() == 2
    ModelVersion.objects.filter(pk=morph_version.pk).update(active=False)
    with pytest.raises(CommandError, match="morphology model"):
        call_command("fit", "--pgc", str(galaxy.pgc), "--init", "cnn", "--no-progress")
    out = io.StringIO()
    call_command("fit", "--pgc", str(galaxy.pgc), "--no-progress", stdout=out)  # auto: moments now
    assert "from moments 2" in out.getvalue()
