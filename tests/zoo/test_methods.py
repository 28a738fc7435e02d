"""The pure consensus methods on hand-built arrays: no database, no Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.methods import CAT_A, CAT_F, CalibratedConsensus, MedianConsensus, VoteTable

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
