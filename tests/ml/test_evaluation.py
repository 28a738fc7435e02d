"""evaluate_inclination's split of the synthetic sets by the disks' intrinsic thickness."""

import io
import json

import numpy as np
import pytest
from django.core.management import call_command

from ml.evaluation import THICKNESS_SPLITS, split_stats, thickness_share
from tests.ml.makers import make_weights


def _set(n: int = 2000, seed: int = 3):
    rng = np.random.default_rng(seed)
    return rng.uniform(45, 90, n), rng.uniform(0.1, 0.3, n), rng


def test_thickness_share_is_near_one_for_an_error_that_follows_the_thickness():
    true, q0, rng = _set()
    # a fixed-q0 estimator: too high for thin disks, too low for thick ones
    pred = true + 20 * (0.2 - q0) + rng.normal(0, 0.1, len(true))
    assert thickness_share(pred, true, q0) > 0.9


def test_thickness_share_is_near_zero_for_noise():
    true, q0, rng = _set()
    assert thickness_share(true + rng.normal(0, 2.0, len(true)), true, q0) < 0.05


def test_thickness_splits_partition_a_set():
    true, q0, _ = _set()
    rows = split_stats(true + 1.0, true, [{"q0": q} for q in q0], THICKNESS_SPLITS)
    assert sum(r["n"] for r in rows) == len(true) and all(r["bias"] == pytest.approx(1.0) for r in rows)


def test_evaluate_inclination_prints_and_stores_the_thickness_split(tmp_path):
    weights = make_weights(tmp_path / "w", members=1)
    out = io.StringIO()
    args = ["--weights", str(weights), "--synthetic", "40", "--galsim", "0", "--sdss", str(tmp_path), "--no-tta"]
    call_command("evaluate_inclination", *args, "--json", str(tmp_path / "e.json"), stdout=out, stderr=io.StringIO())
    extra = json.loads((tmp_path / "e.json").read_text())["synthetic"]["extra"]
    assert [r["subset"] for r in extra["splits"]] == [s for _, s, _ in THICKNESS_SPLITS]
    assert sum(r["n"] for r in extra["splits"]) == extra["n_accepted"] and 0 <= extra["thickness_share"] <= 1
    assert "by the disk's intrinsic thickness" in out.getvalue() and "(q0, inclination) cell" in out.getvalue()


def test_evaluate_inclination_scores_the_bayes_axis_ratio_reference_on_the_classic_set_only(tmp_path):
    weights = make_weights(tmp_path / "w", members=1)
    args = ["--weights", str(weights), "--synthetic", "40", "--wide", "40", "--galsim", "0", "--sdss", str(tmp_path), "--no-tta"]
    call_command("evaluate_inclination", *args, "--json", str(tmp_path / "e.json"), stdout=io.StringIO(), stderr=io.StringIO())
    report = json.loads((tmp_path / "e.json").read_text())
    classic = report["synthetic"]["stats"]["exact b/a Bayes q0 0.1-0.3"]["all"]
    assert classic["n"] == report["synthetic"]["extra"]["n_accepted"] and 0 < classic["rms"] < 6
    assert not any("Bayes" in row for row in report["wide"]["stats"])  # the widened renderer draws its disks otherwise
