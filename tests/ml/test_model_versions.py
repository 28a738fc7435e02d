"""Several ensembles side by side: the shipped CPU and GPU ensembles, register_model, $GALCAT_ML_WEIGHTS."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from ml.inference import Ensemble
from ml.models import ModelVersion
from ml.services import active_version
from ml.weights_files import DEFAULT_WEIGHTS_DIR, GPU_WEIGHTS_DIR, default_weights_dir, sha256_file
from tests.ml.makers import make_weights


@pytest.mark.parametrize("directory", [DEFAULT_WEIGHTS_DIR, GPU_WEIGHTS_DIR], ids=["cpu", "gpu"])
def test_shipped_ensembles_match_their_manifests_and_cards(directory):
    manifest = json.loads((directory / "ensemble.json").read_text())
    card = json.loads((directory / "model_card.json").read_text())
    assert len(manifest["members"]) == 3
    for m in manifest["members"]:
        assert sha256_file(directory / m["file"]) == m["sha256"]
    assert [m["sha256"] for m in card["members"]] == [m["sha256"] for m in manifest["members"]]
    assert card["command"].startswith(("python -m ml.train", "python manage.py train_inclination"))
    assert (directory / "EVALUATION.md").exists()
    # small enough for the repository: three members of the widened default (0.89 M float32
    # parameters each) are 10.7 MB with their cards
    total = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
    assert total < 12 * 2**20
    assert len(Ensemble.load(directory, device="cpu").models) == 3


def test_default_weights_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("GALCAT_ML_WEIGHTS", raising=False)
    assert default_weights_dir() == DEFAULT_WEIGHTS_DIR
    monkeypatch.setenv("GALCAT_ML_WEIGHTS", "ml/weights_gpu")
    assert default_weights_dir() == GPU_WEIGHTS_DIR
    monkeypatch.setenv("GALCAT_ML_WEIGHTS", str(tmp_path))
    assert default_weights_dir() == tmp_path


@pytest.mark.django_db
def test_register_model_switches_the_active_version(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GALCAT_ML_WEIGHTS", str(make_weights(tmp_path / "first", seed=1)))
    first = active_version()  # none active: the default folder is registered
    assert first.weights_path.endswith("first") and first.active
    second_dir = make_weights(tmp_path / "second", seed=2)
    call_command("register_model", str(second_dir), "--no-activate")
    assert "inactive" in capsys.readouterr().out
    assert active_version().pk == first.pk
    call_command("register_model", str(second_dir))
    second = ModelVersion.objects.get(active=True)
    assert second.pk != first.pk and second.sha256 == sha256_file(second_dir / "ensemble.json")
    assert ModelVersion.objects.count() == 2
    with pytest.raises(CommandError, match="not a weights folder"):
        call_command("register_model", str(tmp_path / "missing"))
    with open(second_dir / "member1.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(CommandError, match="sha256"):
        call_command("register_model", str(second_dir))
    assert ModelVersion.objects.get(active=True).pk == second.pk
