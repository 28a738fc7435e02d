"""train_inclination end to end on a tiny set: weights, manifest, model card, ModelVersion, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from ml.inference import Ensemble
from ml.models import ModelVersion
from ml.train import cached_inputs, render_inputs, sha256_file

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_train_inclination_tiny(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["--members", "2", "--images", "48", "--val-images", "16", "--epochs", "1", "--batch-size", "16"]
    args += ["--seed", "77", "--out", str(out), "--cache-dir", ""]
    call_command("train_inclination", *args)
    manifest = json.loads((out / "ensemble.json").read_text())
    assert [m["file"] for m in manifest["members"]] == ["member0.pt", "member1.pt"]
    for m in manifest["members"]:
        assert sha256_file(out / m["file"]) == m["sha256"]
    card = json.loads((out / "model_card.json").read_text())
    assert card["command"].startswith("python manage.py train_inclination --members 2")
    assert card["training_data"]["pool_seed"] == 77 and card["training_data"]["validation_seed"] == 1077
    assert len(card["members"][0]["history"]) == 1 and "rms" in card["members"][0]["history"][0]["val"]
    assert "Exact command" in (out / "MODEL_CARD.md").read_text()
    mv = ModelVersion.objects.get(active=True)
    assert mv.sha256 == sha256_file(out / "ensemble.json") and mv.files == {m["file"]: m["sha256"] for m in manifest["members"]}
    assert not list(out.glob("*.ckpt"))
    assert len(Ensemble.load(out, device="cpu").models) == 2
    # a rerun resumes: finished members are skipped, nothing is retrained
    call_command("train_inclination", *args)
    assert "already trained, skipping" in capsys.readouterr().err
    assert ModelVersion.objects.count() == 1


def test_train_inclination_bad_arguments(tmp_path):
    with pytest.raises(CommandError, match="--members"):
        call_command("train_inclination", "--members", "0", "--out", str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_cache_of_fewer_images_is_extended(tmp_path):
    """A larger set of the same seed reuses a smaller cache and renders only the rest."""
    small = cached_inputs(31, 3, str(tmp_path))
    assert (tmp_path / "synth_seed31_n3.npz").exists()
    # poison the cached images: the extended set must come from the cache, not a re-render
    np.savez(tmp_path / "synth_seed31_n3.npz", x=small[0] + np.float16(1), inc=small[1], rej=small[2])
    x, inc, rej = cached_inputs(31, 5, str(tmp_path))
    assert x.shape == (5, 1, 128, 128) and (tmp_path / "synth_seed31_n5.npz").exists()
    fresh = render_inputs(31, 5)
    assert np.array_equal(x[:3], small[0] + np.float16(1))
    assert np.array_equal(x[3:], fresh[0][3:]) and np.array_equal(rej, fresh[2])
    assert np.array_equal(np.isnan(inc), np.isnan(fresh[1]))
