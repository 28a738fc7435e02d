"""train_inclination end to end on a tiny set: weights, manifest, model card, ModelVersion, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

import ml.train as ml_train
from ml.inference import Ensemble
from ml.models import ModelVersion
from ml.train import TrainConfig, cached_inputs, render_inputs, sha256_file, train_ensemble

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


def test_parallel_render_gives_the_same_images(monkeypatch):
    """Images depend only on (seed, index): chunks rendered in worker processes match a serial render."""
    monkeypatch.setattr(ml_train, "RENDER_CHUNK", 3)
    serial = render_inputs(41, 8, start=2)
    parallel = render_inputs(41, 8, start=2, workers=2)
    assert np.array_equal(serial[0], parallel[0]) and np.array_equal(serial[2], parallel[2])
    assert np.array_equal(np.nan_to_num(serial[1], nan=-1), np.nan_to_num(parallel[1], nan=-1))
    assert [lab["kind"] for lab in parallel[3]] == [lab["kind"] for lab in serial[3]] and len(parallel[3]) == 8


def _tiny(out, **kw) -> TrainConfig:
    base = dict(members=2, images=24, val_images=8, epochs=1, batch_size=8, seed=43, out=str(out), progress=False)
    return TrainConfig(**{**base, **kw})


def test_members_trained_in_parallel_processes_equal_serial_ones(tmp_path):
    cache = str(tmp_path / "cache")
    serial = train_ensemble(_tiny(tmp_path / "serial", cache_dir=cache), log=lambda s: None)
    lines: list[str] = []
    parallel = train_ensemble(_tiny(tmp_path / "parallel", cache_dir=cache, jobs=2), log=lines.append)
    assert any("2 processes" in line for line in lines)
    assert [m["sha256"] for m in parallel["members"]] == [m["sha256"] for m in serial["members"]]
    assert not list((tmp_path / "parallel").glob("*.ckpt"))


def test_continued_training_starts_from_the_given_members(tmp_path):
    cache = str(tmp_path / "cache")
    first = train_ensemble(_tiny(tmp_path / "a", cache_dir=cache), log=lambda s: None)
    second = train_ensemble(_tiny(tmp_path / "b", cache_dir=cache, seed=44, init_from=str(tmp_path / "a")), log=lambda s: None)
    init = second["initialised_from"]
    assert [m["sha256"] for m in init["members"]] == [m["sha256"] for m in first["members"]]
    assert init["command"] == first["command"] and "Continued from an earlier ensemble" in (tmp_path / "b" / "MODEL_CARD.md").read_text()
    # one step from the earlier weights stays near them; a fresh start would not
    a0 = torch.load(tmp_path / "a" / "member0.pt", weights_only=True)["state_dict"]
    b0 = torch.load(tmp_path / "b" / "member0.pt", weights_only=True)["state_dict"]
    w = "features.0.weight"
    assert torch.linalg.norm(b0[w] - a0[w]) < 0.5 * torch.linalg.norm(a0[w])
    # a member file that no longer matches the manifest refuses to seed a run
    with open(tmp_path / "a" / "member1.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ValueError, match="sha256 differs"):
        train_ensemble(_tiny(tmp_path / "c", cache_dir=cache, init_from=str(tmp_path / "a")), log=lambda s: None)
    with pytest.raises(CommandError, match="exclude each other"):
        call_command("train_inclination", "--init-from", str(tmp_path / "a"), "--warm-start", "--out", str(tmp_path / "d"))


def test_continued_training_can_widen_the_members(tmp_path):
    cache = str(tmp_path / "cache")
    train_ensemble(_tiny(tmp_path / "a", cache_dir=cache), log=lambda s: None)
    wider = [[8], [16], [48], [64, 64], [160]]
    lines: list[str] = []
    card = train_ensemble(
        _tiny(tmp_path / "b", cache_dir=cache, seed=44, init_from=str(tmp_path / "a"), stages=wider, hidden=160), log=lines.append
    )
    assert card["net_config"]["stages"] == wider and card["net_config"]["hidden"] == 160
    assert any("widened from" in line for line in lines)
    assert "Widened before training" in (tmp_path / "b" / "MODEL_CARD.md").read_text()
    ens = Ensemble.load(tmp_path / "b", device="cpu")
    assert ens.models[0].config["stages"] == wider
    # continuing the widened ensemble keeps its widths without repeating them
    again = train_ensemble(_tiny(tmp_path / "c", cache_dir=cache, seed=45, init_from=str(tmp_path / "b")), log=lambda s: None)
    card_c = (tmp_path / "c" / "MODEL_CARD.md").read_text()
    assert again["net_config"]["stages"] == wider and "Widened before training" not in card_c
    # the lineage still says which earlier run widened the members
    assert "That run first widened its members, function-preserving, from stages [[8], [16], [32]" in card_c
    with pytest.raises(ValueError, match="shrink"):
        train_ensemble(_tiny(tmp_path / "d", cache_dir=cache, init_from=str(tmp_path / "b"), hidden=64), log=lambda s: None)


def test_train_inclination_parses_and_records_stages(tmp_path):
    out = tmp_path / "w"
    args = ["--members", "1", "--images", "24", "--val-images", "8", "--epochs", "1", "--batch-size", "8"]
    args += ["--seed", "78", "--out", str(out), "--cache-dir", "", "--stages", "8,16,32,48+48,96", "--hidden", "64", "--no-register"]
    call_command("train_inclination", *args)
    card = json.loads((out / "model_card.json").read_text())
    assert card["net_config"]["stages"] == [[8], [16], [32], [48, 48], [96]] and card["net_config"]["hidden"] == 64
    assert "--stages 8,16,32,48+48,96 --hidden 64" in card["command"]
    with pytest.raises(CommandError, match="stages"):
        call_command("train_inclination", "--stages", "8,x", "--out", str(tmp_path / "bad"))


def test_extra_seeds_append_their_pools(tmp_path):
    cache = str(tmp_path / "cache")
    cfg = _tiny(tmp_path / "w", cache_dir=cache, images=6, extra_seeds=(46, 47))
    x, inc, rej = ml_train.training_pool(cfg)
    parts = [cached_inputs(s, 6, cache) for s in (43, 46, 47)]
    assert x.shape == (18, 1, 128, 128) and np.array_equal(x, np.concatenate([p[0] for p in parts]))
    assert np.array_equal(rej, np.concatenate([p[2] for p in parts]))
    card = train_ensemble(cfg, log=lambda s: None)
    assert card["training_data"]["pool_images"] == 18 and card["training_data"]["pool_seeds"] == [43, 46, 47]
    assert card["members"][0]["train_subset_size"] == int(0.8 * 18) and card["pool_from_cache"]
    assert "18 images from seeds 43, 46, 47" in (tmp_path / "w" / "MODEL_CARD.md").read_text()
    with pytest.raises(ValueError, match="extra-seeds"):
        train_ensemble(_tiny(tmp_path / "v", cache_dir=cache, extra_seeds=(43,)), log=lambda s: None)


def test_train_inclination_records_extra_seeds(tmp_path):
    out = tmp_path / "w"
    args = ["--members", "1", "--images", "8", "--val-images", "8", "--epochs", "1", "--batch-size", "8"]
    call_command("train_inclination", *args, "--seed", "79", "--extra-seeds", "80", "--out", str(out), "--cache-dir", "", "--no-register")
    card = json.loads((out / "model_card.json").read_text())
    assert "--extra-seeds 80" in card["command"] and card["training_data"]["pool_seeds"] == [79, 80]
