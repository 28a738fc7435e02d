"""Consensus inclinations: calibration of biased volunteers, shrinkage, flags, overrides, commands."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from core.roles import CURATOR, grant
from tests.factories import GalaxyFactory, UserFactory
from zoo.consensus import (
    TruthTableError,
    compute_consensus,
    consensus_report,
    get_method,
    load_vote_table,
    read_truth_table,
    recompute,
    run_consensus_task,
    truth_report,
)
from zoo.methods import (
    CAT_A,
    CAT_F,
    CAT_J,
    CalibratedConsensus,
    JointConsensus,
    MedianConsensus,
    VoteTable,
    calibration_cv,
    segment_median,
    split_half,
)
from zoo.models import CalibrationGalaxy, ConsensusInclination, ConsensusOverride, InclinationVote, VolunteerCalibration


def synthetic_table(seed: int = 3, n_gal: int = 120, n_vol: int = 10, noise: float = 2.0, biased=(0.8, 20.0)):
    """Volunteers measure true inclinations with noise; volunteer 0 sees x = a_true*inc + b_true.

    Returns (table, truth [G], known {galaxy index: inc} of every fourth galaxy)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(46, 88, n_gal)
    records = []
    for v in range(n_vol):
        for g in range(n_gal):
            if v > 0 and rng.random() > 0.5:
                continue
            x = truth[g] + rng.normal(0, noise)
            if v == 0:
                x = biased[0] * truth[g] + biased[1] + rng.normal(0, noise)
            records.append((v + 1, 1000 + g, float(np.clip(x, 0, 90)), CAT_A))
    table = VoteTable.from_records(records)
    known = {g: float(truth[g]) for g in range(0, n_gal, 4)}
    return table, truth, known


def test_segment_median():
    values = np.array([3.0, 1.0, 2.0, 10.0, 20.0, 5.0])
    groups = np.array([0, 0, 0, 2, 2, 2])
    out = segment_median(values, groups, 4)
    assert out[0] == 2.0 and out[2] == 10.0
    assert np.isnan(out[1]) and np.isnan(out[3])
    assert np.isnan(segment_median(np.zeros(0), np.zeros(0, dtype=int), 2)).all()


def test_biased_volunteer_is_corrected():
    table, truth, known = synthetic_table()
    res = CalibratedConsensus().compute(table, known)
    u0 = int(np.searchsorted(table.users, 1))
    # The biased volunteer sees x = 0.8 i + 20: the calibration inverts it, i = 1.25 x - 25.
    assert res.a[u0] == pytest.approx(1.25, abs=0.08)
    assert res.b[u0] == pytest.approx(-25.0, abs=5.0)
    mine = table.user == u0
    calibrated = res.a[u0] * table.inc[mine] + res.b[u0]
    raw_rms = np.sqrt(np.mean((table.inc[mine] - truth[table.galaxy[mine]]) ** 2))
    cal_rms = np.sqrt(np.mean((calibrated - truth[table.galaxy[mine]]) ** 2))
    assert raw_rms > 4.0 and cal_rms < 3.0
    # Unbiased volunteers keep a ~ 1, b ~ 0.
    others = [i for i in range(table.n_users) if i != u0]
    assert np.all(np.abs(res.a[others] - 1) < 0.1)
    # And the consensus is closer to the truth than the naive median.
    med = MedianConsensus().compute(table, known)
    ok = res.accepted() & med.accepted()
    assert ok.sum() > 50
    rms_cal = np.sqrt(np.mean((res.inc[ok] - truth[ok]) ** 2))
    rms_med = np.sqrt(np.mean((med.inc[ok] - truth[ok]) ** 2))
    assert rms_cal < rms_med


def test_volunteer_with_few_votes_is_shrunk_to_identity():
    table, truth, known = synthetic_table()
    # A newcomer with two strongly biased votes.
    extra = [(99, 1000 + g, float(truth[g] + 12.0), CAT_A) for g in (1, 2)]
    records = [
        (int(table.users[u]), int(table.pgcs[g]), float(x), int(c)) for u, g, x, c in zip(table.user, table.galaxy, table.inc, table.cat)
    ]
    table2 = VoteTable.from_records(records + extra)
    res = CalibratedConsensus().compute(table2, known)
    u = int(np.searchsorted(table2.users, 99))
    # Full correction would be b = -12; with two votes the shrinkage keeps most of the identity.
    assert abs(res.b[u]) < 4.0 and abs(res.a[u] - 1) < 0.1


def test_flags_by_weighted_majority_and_minimum_votes():
    records = (
        [(u, 1, None, CAT_F) for u in (1, 2, 3)]
        + [(4, 1, 60.0, CAT_A)]  # galaxy 1: 3 face-on, 1 measurement -> F
        + [(1, 2, None, CAT_J), (2, 2, None, CAT_J), (3, 2, 70.0, CAT_A), (4, 2, 71.0, CAT_A)]  # tie -> J
        + [(1, 3, 50.0, CAT_A), (2, 3, 52.0, CAT_A)]  # two votes only -> no value
        + [(u, 4, 80.0 + u, CAT_A) for u in (1, 2, 3)]  # three measurements -> A
        + [(1, 5, 60.0, CAT_A), (2, 5, 61.0, CAT_A), (3, 5, None, CAT_J)]  # A wins, 2 measurements -> none
    )
    table = VoteTable.from_records(records)
    for method in (MedianConsensus(), CalibratedConsensus()):
        res = method.compute(table, {})
        flags = dict(zip(table.pgcs.tolist(), res.flag.tolist()))
        assert flags == {1: CAT_F, 2: CAT_J, 3: -1, 4: CAT_A, 5: -1}, method.name
        assert np.isnan(res.inc[0]) and res.inc[3] == pytest.approx(82.0, abs=0.01)


def test_outlier_is_rejected():
    records = [(u, 1, 70.0 + 0.5 * u, CAT_A) for u in range(1, 6)] + [(6, 1, 20.0, CAT_A)]
    res = CalibratedConsensus().compute(VoteTable.from_records(records), {})
    assert res.inc[0] == pytest.approx(71.5, abs=0.5)
    assert res.n[0] == 5 and res.extra["rejected_votes"] == 1
    assert 0 < res.inc_e[0] < 2


def test_deterministic():
    table, _, known = synthetic_table()
    a = CalibratedConsensus().compute(table, known)
    b = CalibratedConsensus().compute(table, known)
    assert np.array_equal(a.inc, b.inc, equal_nan=True) and np.array_equal(a.inc_e, b.inc_e, equal_nan=True)
    assert split_half(MedianConsensus(), table, known, splits=3, min_votes=2) == split_half(
        MedianConsensus(), table, known, splits=3, min_votes=2
    )


def test_quality_measures_on_synthetic_votes():
    table, truth, known = synthetic_table(noise=2.0)
    cv_cal = calibration_cv(CalibratedConsensus(), table, known, splits=4)
    cv_med = calibration_cv(MedianConsensus(), table, known, splits=4)
    # With one biased volunteer among ten, the calibration must help on held-out galaxies.
    assert cv_cal["rms_mean"] < cv_med["rms_mean"]
    assert 0 < cv_cal["rms_mean"] < 2.5
    s = split_half(CalibratedConsensus(), table, known, splits=4, min_votes=2)
    assert 0 < s["rms_mean"] < 4 and s["galaxies_mean"] > 10


# ---------------------------------------------------------------------------------------------
# Catalog layer
# ---------------------------------------------------------------------------------------------
def _vote(user, galaxy, inc, **kw):
    return InclinationVote.objects.create(user=user, galaxy=galaxy, inc=inc, source="import", **kw)


@pytest.fixture
def voted(db):
    """Four galaxies with votes of four volunteers; one volunteer revised a vote in round 1."""
    users = [UserFactory() for _ in range(4)]
    gals = [GalaxyFactory() for _ in range(4)]
    for i, u in enumerate(users):
        _vote(u, gals[0], 60.0 + i)
        _vote(u, gals[1], None, face_on=True, rejected=True)
        _vote(u, gals[2], 80.0 + 0.5 * i)
    _vote(users[0], gals[3], 50.0)
    _vote(users[0], gals[0], 40.0, round=1)  # latest vote of users[0] on gals[0]
    CalibrationGalaxy.objects.create(galaxy=gals[2], inc=81.0, flag="A")
    return users, gals


def test_latest_vote_per_volunteer_is_used(voted):
    users, gals = voted
    table = load_vote_table()
    assert len(table.user) == 13
    gi = int(np.searchsorted(table.pgcs, gals[0].pk))
    ui = int(np.searchsorted(table.users, users[0].pk))
    assert table.inc[(table.galaxy == gi) & (table.user == ui)].tolist() == [40.0]


def test_compute_store_and_override(voted):
    users, gals = voted
    out = recompute("zoo.methods.MedianConsensus")
    assert out == {"method": "median", "version": "1", "galaxies": 3, "A": 2, "F": 1, "J": 0}
    row = ConsensusInclination.objects.get(galaxy=gals[0], method="median")
    assert row.inc == pytest.approx(61.5) and row.flag == "A" and row.inc_n == 4 and row.version == "1"
    assert ConsensusInclination.objects.get(galaxy=gals[1]).flag == "F"
    assert not ConsensusInclination.objects.filter(galaxy=gals[3]).exists()  # one vote only
    curator = UserFactory()
    grant(curator, CURATOR)
    ConsensusOverride.objects.create(galaxy=gals[0], curator=curator, flag="J", reason="two galaxies")
    ConsensusOverride.objects.create(galaxy=gals[3], curator=curator, flag="A", inc=55.0, inc_e=2.0)
    rows = {r.pgc: r for r in compute_consensus(get_method("zoo.methods.MedianConsensus"))}
    assert rows[gals[0].pk].flag == "J" and rows[gals[0].pk].inc is None and rows[gals[0].pk].overridden_by == curator.pk
    assert rows[gals[3].pk].inc == 55.0 and rows[gals[3].pk].flag == "A"
    # The override wins whatever the votes say, also after new votes and a new run.
    for u in users[1:]:
        _vote(u, gals[3], 88.0)
    run_consensus_task([gals[3].pk])
    row = ConsensusInclination.objects.get(galaxy=gals[3], method="joint")
    assert row.inc == 55.0 and row.overridden_by_id == curator.pk and row.version == JointConsensus.version
    cal = {c.user_id: c for c in VolunteerCalibration.objects.filter(method="joint")}
    assert set(cal) == {u.pk for u in users}
    assert cal[users[0].pk].n_votes == 3 and all(0.6 <= c.a <= 1.7 and c.sigma > 0 for c in cal.values())


def test_consensus_command_writes_csv(voted, tmp_path):
    users, gals = voted
    out = tmp_path / "consensus.csv"
    call_command("consensus", "--out", str(out), stderr=io.StringIO())
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["pgc", "inc", "inc_e", "inc_n", "flag", "method"]
    by_pgc = {int(r["pgc"]): r for r in rows}
    assert set(by_pgc) == {gals[0].pk, gals[1].pk, gals[2].pk}
    assert by_pgc[gals[1].pk]["flag"] == "F" and by_pgc[gals[1].pk]["inc"] == ""
    assert by_pgc[gals[0].pk]["method"] == f"joint {JointConsensus.version}"
    assert ConsensusInclination.objects.filter(method="joint").count() == 3


def test_consensus_command_bad_input(voted, tmp_path):
    with pytest.raises(CommandError):
        call_command("consensus", "--method", "catalog.models.Galaxy")
    with pytest.raises(CommandError):
        call_command("consensus", "--method", "no.such.Method")
    with pytest.raises(CommandError):
        call_command("consensus", "--out", str(tmp_path / "missing" / "x.csv"))
    assert not ConsensusInclination.objects.exists()


def test_consensus_report_command(voted):
    out = io.StringIO()
    call_command("consensus_report", "--splits", "2", stdout=out)
    text = out.getvalue()
    assert "Split-half" in text and "median 1" in text and f"joint {JointConsensus.version}" in text
    with pytest.raises(CommandError):
        call_command("consensus_report", "--splits", "1")


@pytest.mark.django_db
def test_consensus_report_needs_votes():
    with pytest.raises(CommandError, match="no votes"):
        call_command("consensus_report", "--splits", "2", stdout=io.StringIO())


@pytest.mark.slow
@pytest.mark.django_db
def test_report_on_shared_votes(shared_data):
    """The shared GIZ votes: the calibrated method beats the naive median against held-out known
    inclinations, and two halves of the volunteers agree to a few degrees."""
    from zoo.importers import import_votes
    from zoo.standards import seed_references

    import_votes(shared_data / "giz_votes.csv")
    seed_references(shared_data)
    rep = consensus_report([MedianConsensus(), CalibratedConsensus(), JointConsensus()], splits=4, min_votes_half=(2,))
    # Known inclinations: the accepted calibration galaxies and standards that got votes.
    assert rep["volunteers"] == 38 and rep["calibration_galaxies"] == 691
    med, cal = rep["methods"]["median 1"], rep["methods"][CalibratedConsensus().label]
    joint = rep["methods"][JointConsensus().label]
    assert 2.0 < med["calibration_cv"]["rms_mean"] < 3.2
    assert cal["calibration_cv"]["rms_mean"] < med["calibration_cv"]["rms_mean"]
    assert joint["calibration_cv"]["rms_mean"] < med["calibration_cv"]["rms_mean"]
    assert joint["split_half"][2]["rms_mean"] < cal["split_half"][2]["rms_mean"] < med["split_half"][2]["rms_mean"] < 5


@pytest.mark.slow
@pytest.mark.django_db
def test_truth_report_on_shared_votes(shared_data, tmp_path):
    """Published inclinations held out from every method: the joint model beats the plain mean
    and median of the same votes, within 2.4 deg RMS and 0.3 deg of bias, and the truth table
    written from the catalog is the same for the same seed."""
    from zoo.importers import import_votes
    from zoo.standards import seed_references

    import_votes(shared_data / "giz_votes.csv")
    seed_references(shared_data)
    path = tmp_path / "truth.csv"
    call_command("consensus_report", "--write-truth", str(path), "--truth-seed", "1")
    again = io.StringIO()
    call_command("consensus_report", "--write-truth", "-", "--truth-seed", "1", stdout=again)
    assert path.read_bytes().decode() == again.getvalue()
    truth = read_truth_table(path)
    assert 140 < len(truth) < 180
    rep = truth_report(truth, splits=4)
    m = rep["methods"]
    joint, mean, median = m[JointConsensus().label]["all"], m["mean 1"]["all"], m["median 1"]["all"]
    assert joint["n"] == mean["n"] == median["n"] == rep["n_common"] > 140
    assert joint["rms"] < min(mean["rms"], median["rms"]) and joint["rms"] <= 2.4 and abs(joint["bias"]) <= 0.3
    assert rep["split_half"][JointConsensus().label]["rms_mean"] < rep["split_half"]["median 1"]["rms_mean"]
    assert set(rep["kinds"]["kinds"]) == {"calibration", "target"}


def test_read_truth_table_errors(tmp_path):
    bad = {
        "pgc,value\n1,60\n": "missing column",
        "pgc,inc\nabc,60\n": "line 2, column pgc",
        "pgc,inc\n1,sixty\n": "line 2, column inc",
        "pgc,inc\n1,60\n2,95\n": "line 3, column inc: 95 outside",
        "pgc,inc\n1,60\n1,61\n": "line 3, column pgc: PGC 1 given twice",
        "pgc,inc\n": "no rows",
    }
    for i, (text, message) in enumerate(bad.items()):
        path = tmp_path / f"t{i}.csv"
        path.write_text(text)
        with pytest.raises(TruthTableError, match=message):
            read_truth_table(path)
    path = tmp_path / "ok.csv"
    path.write_text("pgc,inc,source\n10,60.5,x\n11,88,y\n")
    assert read_truth_table(path) == {10: 60.5, 11: 88.0}


def test_consensus_report_truth_command(voted, tmp_path):
    users, gals = voted
    path = tmp_path / "truth.csv"
    # gals[2] is a calibration galaxy with 4 measurements: the only one a truth table can hold.
    call_command("consensus_report", "--write-truth", str(path), "--truth-fraction", "1", stderr=io.StringIO())
    assert read_truth_table(path) == {gals[2].pk: 81.0}
    path.write_text(f"pgc,inc\n{gals[0].pk},62\n{gals[2].pk},80\n")
    out = io.StringIO()
    call_command("consensus_report", "--truth", str(path), "--splits", "2", stdout=out)
    text = out.getvalue()
    assert "mean 1" in text and "median 1" in text and f"joint {JointConsensus.version}" in text
    assert "by inclination" in text and "by input table" in text and "Does a per-volunteer linear calibration transfer" in text
    with pytest.raises(CommandError, match="line 2, column inc"):
        path.write_text("pgc,inc\n1,x\n")
        call_command("consensus_report", "--truth", str(path))
    with pytest.raises(CommandError, match="no such file"):
        call_command("consensus_report", "--truth", str(tmp_path / "missing.csv"))
    path.write_text("pgc,inc\n999999,60\n")
    with pytest.raises(CommandError, match="none of the 1 truth galaxies"):
        call_command("consensus_report", "--truth", str(path), "--splits", "2")


def test_consensus_report_saves_truth_scores(voted, tmp_path, settings):
    """--save-scores stores each method's RMS, bias and N against the truth table where the
    galaxy page and /compare/ read them (ml.scores), with the command that measured them."""
    from zoo.consensus import load_truth_scores

    users, gals = voted
    settings.GALCAT_CONSENSUS_SCORES = str(tmp_path / "scores" / "truth.json")
    path = tmp_path / "truth.csv"
    path.write_text(f"pgc,inc\n{gals[0].pk},62\n{gals[2].pk},80\n")
    with pytest.raises(CommandError, match="--save-scores needs --truth"):
        call_command("consensus_report", "--save-scores", "--splits", "2", stdout=io.StringIO())
    assert load_truth_scores() is None
    call_command("consensus_report", "--truth", str(path), "--splits", "2", "--save-scores", stdout=io.StringIO(), stderr=io.StringIO())
    rec = load_truth_scores()
    assert rec["truth_rows"] == 2 and rec["n_common"] == 2 and rec["command"].endswith("--save-scores")
    by = {m["label"]: m for m in rec["methods"]}
    assert set(by) >= {"mean 1", "median 1", f"joint {JointConsensus.version}"}
    assert by[f"joint {JointConsensus.version}"]["default"] and not by["mean 1"]["default"]
    # plain means: gals[0] (truth 62) 40, 61, 62, 63 -> 56.5; gals[2] (truth 80) 80, 80.5, 81, 81.5 -> 80.75
    assert by["mean 1"]["n"] == 2 and by["mean 1"]["bias"] == pytest.approx((-5.5 + 0.75) / 2)
    assert by["mean 1"]["rms"] == pytest.approx(((5.5**2 + 0.75**2) / 2) ** 0.5)
