"""train_latent, latent_score and evaluate_latent on tiny sets and the shared SDSS files."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from django.core.management import CommandError, call_command

from ml.latent import load_latent
from ml.latent.train import TrainConfig, train_latent
from ml.models import ModelVersion
from ml.weights_files import sha256_file

TINY = ["--images", "64", "--val-images", "120", "--epochs", "1", "--batch-size", "32", "--dim", "8", "--width", "4", "--cache-dir", ""]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Weights of a tiny training (ml.latent.train; no database)."""
    out = tmp_path_factory.mktemp("latent_cmd") / "w"
    cfg = TrainConfig(images=64, val_images=120, epochs=1, batch_size=32, dim=8, width=4, out=str(out), cache_dir=None, max_steps=2)
    train_latent(cfg, command="test", log=lambda s: None)
    return out


@pytest.mark.django_db
@pytest.mark.slow
def test_train_latent_writes_weights_card_and_registers(tmp_path, shared_data):
    out = tmp_path / "w"
    real = [str(shared_data / "sdss" / f) for f in ("pgc1844_g.png", "pgc2813_r.png", "pgc3738_gri.jpg", "pgc5440_i.png")]
    call_command("train_latent", *TINY, "--adapt-steps", "2", "--seed", "7", "--out", str(out), "--no-progress", *real)
    manifest = json.loads((out / "ensemble.json").read_text())
    assert manifest["task"] == "latent" and [m["file"] for m in manifest["members"]] == ["vae.pt", "space.json"]
    for m in manifest["members"]:
        assert sha256_file(out / m["file"]) == m["sha256"]
    card = json.loads((out / "model_card.json").read_text())
    assert card["command"].startswith("python manage.py train_latent --dim 8")
    assert card["training_data"]["pool_seed"] == 7 and card["training_data"]["validation_seed"] == 1007
    assert len(card["training_data"]["real_files"]) == 4
    ad = card["adaptation"]
    assert ad["steps"] == 2 and set(ad["held_out_galaxies"]).isdisjoint(ad["adaptation_galaxies"])
    assert 0.0 <= ad["auroc_before"]["held_out"] <= 1.0
    assert "Exact command" in (out / "MODEL_CARD.md").read_text()
    mv = ModelVersion.objects.get(task=ModelVersion.Task.LATENT, active=True)
    assert mv.sha256 == sha256_file(out / "ensemble.json") and mv.embedding_dim == 8


def test_train_latent_bad_arguments(tmp_path):
    with pytest.raises(CommandError, match="--dim"):
        call_command("train_latent", "--dim", "0", "--out", str(tmp_path / "w"))
    with pytest.raises(CommandError, match="no such file"):
        call_command("train_latent", str(tmp_path / "missing.png"), "--out", str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_latent_score_writes_the_csv(tiny_weights, shared_data, tmp_path):
    files = [str(shared_data / "sdss" / f) for f in ("pgc1844_g.png", "pgc2813_gri.jpg", "pgc5440_r.png")]
    dup = tmp_path / "copy_of_1844.png"
    shutil.copy(files[0], dup)
    out = tmp_path / "scores.csv"
    call_command("latent_score", *files, str(dup), "--out", str(out), "--weights", str(tiny_weights), "--neighbours", "2")
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "outlier_score", "neighbour_1", "distance_1", "neighbour_2", "distance_2"]
    assert [r["file"] for r in rows] == files + [str(dup)]
    assert rows[0]["neighbour_1"] == str(dup) and float(rows[0]["distance_1"]) < 1e-6
    assert rows[3]["neighbour_1"] == files[0]
    assert all(float(r["distance_2"]) >= float(r["distance_1"]) for r in rows)
    m = load_latent(tiny_weights, device="cpu")
    from ml.preprocess import load_image_file

    # the same score alone as in a batch (up to float noise, which the tiny model's narrow robust scales magnify)
    assert abs(float(rows[1]["outlier_score"]) - float(m.outlier_score([load_image_file(files[1])])[0])) < 0.05
    # without --neighbours: two columns; one file alone works (the score needs no other file)
    call_command("latent_score", files[1], "--out", str(out), "--weights", str(tiny_weights))
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "outlier_score"] and len(rows) == 1


def test_latent_score_errors(tiny_weights, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(CommandError, match="bad.png"):
        call_command("latent_score", str(bad), "--weights", str(tiny_weights))
    with pytest.raises(CommandError, match="no such file"):
        call_command("latent_score", str(tmp_path / "none.png"), "--weights", str(tiny_weights))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_weights, broken)
    (broken / "vae.pt").write_bytes(b"x")
    with pytest.raises(CommandError, match="sha256"):
        call_command("latent_score", str(bad), "--weights", str(broken))


@pytest.mark.slow
def test_evaluate_latent_writes_the_report(tiny_weights, shared_data, tmp_path):
    sdss = tmp_path / "sdss"
    sdss.mkdir()
    for f in ("pgc1844_g.png", "pgc1844_gri.jpg", "pgc2813_r.png", "pgc5440_i.png"):
        shutil.copy(shared_data / "sdss" / f, sdss / f)
    report, js = tmp_path / "EVAL.md", tmp_path / "eval.json"
    args = ["--weights", str(tiny_weights), "--retrieval", "60", "--anomalies", "120", "--sdss", str(sdss), "--domain-synthetic", "40"]
    args += [
        "--sweep",
        "4",
        "--sweep-images",
        "32",
        "--sweep-epochs",
        "1",
        "--sweep-test",
        "120",
        "--sweep-calibration",
        "120",
        "--report",
        str(report),
        "--json",
        str(js),
    ]
    call_command("evaluate_latent", *args)
    text = report.read_text()
    for heading in ("## Retrieval", "## Injected anomalies", "## Real SDSS cutouts", "## Latent-dimension sweep"):
        assert heading in text
    data = json.loads(js.read_text())
    assert data["anomalies"]["n_anomalies"] == 6 and set(data["anomalies"]["per_kind"]) == {
        "star",
        "blend",
        "blank",
        "saturated",
        "trail",
        "cosmic_ray",
    }
    assert 0.0 <= data["anomalies"]["auroc"] <= 1.0 and data["real"]["files"] == 4 and data["real"]["galaxies"] == 3
    assert [r["dim"] for r in data["sweep"]["rows"]] == [4] and "2-core CPU" in data["sweep"]["note"]
    assert "own artefact part" in data["sweep"]["note"] and "auroc_artefact_only" in data["anomalies"]
