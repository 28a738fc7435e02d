"""The pure consensus methods on hand-built arrays: no database, no Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.methods import (
    CAT_A,
    CAT_F,
    CAT_J,
    CalibratedConsensus,
    JointConsensus,
    MeanConsensus,
    MedianConsensus,
    VoteTable,
    compare_kinds,
    main_kind,
    rms,
    truth_scores,
)

ROOT = Path(__file__).resolve().parents[2]


def test_methods_import_without_django():
    code = "import sys, zoo.methods; assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_median_consensus_is_the_median():
    records = (
        [(1, 10, 60.0, CAT_A), (2, 10, 71.0, CAT_A), (3, 10, 64.0, CAT_A)]  # odd count: the middle vote
        + [(1, 20, 50.0, CAT_A), (2, 20, 58.0, CAT_A), (3, 20, 70.0, CAT_A), (4, 20, 52.0, CAT_A)]  # even: mean of the middle two
        + [(1, 30, 80.0, CAT_A), (2, 30, 82.0, CAT_A), (3, 30, 90.0, CAT_A), (4, 30, None, CAT_F)]  # the face-on vote has no value
    )
    res = MedianConsensus().compute(VoteTable.from_records(records))
    assert res.inc.tolist() == [64.0, 55.0, 82.0]
    assert res.n.tolist() == [3, 4, 3]
    assert res.flag.tolist() == [CAT_A, CAT_A, CAT_A] and np.all(res.inc_e > 0)

    # Random votes, 3-7 per galaxy: the consensus is numpy's median of each galaxy's votes.
    rng = np.random.default_rng(5)
    records = [(u, g, float(rng.uniform(45, 90)), CAT_A) for g in range(40) for u in range(int(rng.integers(3, 8)))]
    table = VoteTable.from_records(records)
    res = MedianConsensus().compute(table)
    expected = [np.median(table.inc[table.galaxy == g]) for g in range(table.n_galaxies)]
    assert res.inc == pytest.approx(expected, abs=1e-12)


def test_bias_seen_on_calibration_galaxies_is_removed():
    """Three volunteers all see galaxies 5 deg more edge-on than they are (noise 0.5 deg). They
    vote on 150 calibration galaxies of known inclination and on 10 targets that only they saw:
    the naive median keeps the bias, the calibrated consensus removes it."""
    rng = np.random.default_rng(1)
    n_known, n_target, bias = 150, 10, 5.0
    truth = rng.uniform(50, 80, n_known + n_target)
    records = [(v, 1000 + g, float(truth[g] + bias + rng.normal(0, 0.5)), CAT_A) for v in (1, 2, 3) for g in range(len(truth))]
    table = VoteTable.from_records(records)
    known = {g: float(truth[g]) for g in range(n_known)}
    targets = np.arange(n_known, n_known + n_target)

    res = CalibratedConsensus().compute(table, known)
    assert res.accepted()[targets].all()
    err = res.inc[targets] - truth[targets]
    assert abs(err.mean()) < 1.0 and np.all(np.abs(err) < 1.5)
    # Each volunteer's calibration i' = a*i + b takes about 5 deg off a vote in mid-range.
    pivot = CalibratedConsensus.PIVOT
    assert res.a * pivot + res.b - pivot == pytest.approx(np.full(3, -bias), abs=1.0)

    med = MedianConsensus().compute(table, known)
    assert (med.inc[targets] - truth[targets]).mean() > 4.0


def _volunteer_votes(seed: int = 3, n_gal: int = 400, n_vol: int = 12, per_galaxy: int = 4, gross: float = 0.03):
    """Volunteers with their own bias c0, scale error c1 and noise sigma each measure 4 galaxies of
    400; 3 % of the votes are gross errors (uniform 45-90). Every fifth galaxy is known. True
    values stay below 84 deg, so that no vote is cut at 90."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(45, 84, n_gal)
    c0, c1, sig = rng.normal(0, 3, n_vol), rng.normal(0, 0.1, n_vol), rng.uniform(1.5, 5, n_vol)
    records = []
    for g in range(n_gal):
        for v in rng.choice(n_vol, per_galaxy, replace=False):
            x = truth[g] + c0[v] + c1[v] * (truth[g] - 67.5) + sig[v] * rng.standard_normal()
            if rng.random() < gross:
                x = rng.uniform(45, 90)
            records.append((int(v), g, float(np.clip(x, 0, 90)), CAT_A))
    known = {g: float(truth[g]) for g in range(0, n_gal, 5)}
    return VoteTable.from_records(records), truth, known, c0, sig


def test_joint_model_recovers_volunteers_and_beats_the_others():
    table, truth, known, c0, sig = _volunteer_votes()
    targets = np.array([g for g in range(len(truth)) if g not in known])
    scores = {}
    for method in (MeanConsensus(), MedianConsensus(), CalibratedConsensus(), JointConsensus()):
        res = method.compute(table, known)
        d = res.inc[targets] - truth[targets]
        scores[method.name] = (rms(d), float(d.mean()))
    assert scores["joint"][0] < 0.8 * scores["calibrated"][0] < scores["mean"][0]
    assert abs(scores["joint"][1]) < 0.3
    res = JointConsensus().compute(table, known)
    # Each volunteer's bias at mid-range and noise come back: i' = a*i + b undoes x = t + c0 at t = PIVOT.
    pivot = JointConsensus.PIVOT
    assert res.a * (pivot + c0) + res.b - pivot == pytest.approx(np.zeros(len(c0)), abs=1.5)
    c0_seen = pivot - (res.a * pivot + res.b)
    assert np.corrcoef(c0_seen, c0)[0, 1] > 0.95
    assert np.corrcoef(res.sigma, sig)[0, 1] > 0.9
    assert res.extra["downweighted_votes"] > 0  # the gross errors


def test_joint_scale_is_anchored_by_known_galaxies():
    """Everyone compresses the scale by 20 %: without known galaxies nothing can tell (values
    stay compressed); with them, the scale comes back."""
    rng = np.random.default_rng(4)
    truth = rng.uniform(46, 89, 300)
    records = [(v, g, float(67.5 + 0.8 * (truth[g] - 67.5) + rng.normal(0, 1.5)), CAT_A) for v in range(6) for g in range(300)]
    table = VoteTable.from_records(records)
    known = {g: float(truth[g]) for g in range(0, 300, 6)}
    anchored = JointConsensus().compute(table, known)
    free = JointConsensus().compute(table, {})
    slope = lambda r: np.polyfit(truth, r.inc, 1)[0]  # noqa: E731
    assert slope(anchored) == pytest.approx(1.0, abs=0.05)
    assert slope(free) < 0.9


def test_joint_flags_weigh_volunteers_by_their_flag_habits():
    """Volunteer 9 rejects everything; on galaxy 0 only they and two others voted, one of
    whom also rejects. Dawid-Skene learns that 9's rejections say little: the galaxy stays
    accepted, where a plain majority would tie-break to J."""
    records = []
    for g in range(60):
        for v in range(1, 6):
            records.append((v, g, 60.0 + g % 20 + v * 0.1, CAT_A))
        records.append((9, g, None, CAT_J))
    records = [r for r in records if not (r[1] == 0 and r[0] in (1, 2, 3))]
    records = [r if not (r[1] == 0 and r[0] == 4) else (4, 0, None, CAT_J) for r in records]
    table = VoteTable.from_records(records)
    res = JointConsensus().compute(table)
    assert res.flag[0] == CAT_J or res.extra["flag_posterior"][0, CAT_A] > res.extra["flag_posterior"][1:, CAT_J].max()
    assert (res.flag[1:] == CAT_A).all()
    conf = res.extra["flag_posterior"]
    assert conf.shape == (60, 3) and np.allclose(conf.sum(1), 1.0)


def test_joint_known_flags_are_kept_and_results_deterministic():
    table, truth, known, _, _ = _volunteer_votes(n_gal=120)
    a = JointConsensus().compute(table, known, {0: CAT_F})
    b = JointConsensus().compute(table, known, {0: CAT_F})
    assert a.flag[0] == CAT_F and np.isnan(a.inc[0])
    assert np.array_equal(a.inc, b.inc, equal_nan=True) and np.array_equal(a.sigma, b.sigma)


def test_truth_scores_use_the_galaxies_every_method_scores():
    table, truth, known, _, _ = _volunteer_votes(n_gal=100)
    res = {m.label: m.compute(table, known) for m in (MeanConsensus(), JointConsensus())}
    res["mean 1"].inc[5] = np.nan  # the mean gives no value to galaxy 5
    gi = np.arange(100)
    rep = truth_scores(res, gi, truth, np.where(gi % 2 == 0, "calibration", "target").astype(object))
    assert rep["n_common"] == 99 and rep["methods"]["mean 1"]["no_value"] == 1
    joint = rep["methods"][JointConsensus().label]
    assert joint["all"]["n"] == 99 and sum(b["n"] for b in joint["bins"].values()) == 99
    assert joint["groups"]["calibration"]["n"] == 50 and joint["groups"]["target"]["n"] == 49
    assert joint["all"]["rms"] < rep["methods"]["mean 1"]["all"]["rms"]


def test_compare_kinds_finds_a_bias_that_depends_on_how_galaxies_were_served():
    """Volunteers see calibration-served galaxies 2 deg lower than the same kind of galaxy served
    as an ordinary target: a calibration fitted on one kind adds that bias on the other."""
    rng = np.random.default_rng(7)
    truth = rng.uniform(46, 89, 400)
    records, served = [], []
    for g in range(400):
        calib = (g // 2) % 2 == 1
        kind = "calibration" if calib else "target"
        for v in range(4):
            records.append((v, g, float(truth[g] + (-1.0 if calib else 1.0) + rng.normal(0, 1.0)), CAT_A))
            served.append(kind)
    table = VoteTable.from_records(records, served)
    known = {g: float(truth[g]) for g in range(400)}
    rep = compare_kinds(table, table.served, known)
    assert rep["kinds"]["calibration"]["galaxies"] == 200 and rep["kinds"]["target"]["votes"] == 800
    tr = rep["transfer"]
    assert tr["calibration -> target"]["calibrated"]["bias"] == pytest.approx(2.0, abs=0.3)
    assert abs(tr["target -> target (other half)"]["calibrated"]["bias"]) < 0.3
    assert main_kind(table, table.served)[:4].tolist() == ["target", "target", "calibration", "calibration"]
