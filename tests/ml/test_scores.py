"""Scores of each inclination estimator (ml.scores): where they come from, when they are not
shown, and the table on the galaxy page and /compare/."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from ml.scores import EVALUATION_FILE, cnn_scores, consensus_scores, estimator_scores
from ml.weights_files import DEFAULT_WEIGHTS_DIR
from tests.factories import GalaxyFactory
from tests.ml.makers import make_weights
from zoo.consensus import save_truth_scores

#: A record in the shape consensus_report --truth --save-scores writes (zoo.consensus.truth_scores_record).
CONSENSUS_RECORD = {
    "truth_file": "truth.csv",
    "command": "python manage.py consensus_report --truth truth.csv --min-votes 3 --splits 20 --seed 1 --save-scores",
    "measured": "2026-12-02T00:00:00+00:00",
    "truth_rows": 157,
    "n_common": 155,
    "min_votes": 3,
    "methods": [
        {"method": "mean", "version": "1", "label": "mean 1", "default": False, "n": 155, "rms": 2.51, "mae": 1.9, "bias": 0.04},
        {"method": "joint", "version": "1.0", "label": "joint 1.0", "default": True, "n": 155, "rms": 2.21, "mae": 1.6, "bias": -0.07},
    ],
}


def test_cnn_scores_come_from_the_evaluation_of_the_same_weights(tmp_path):
    weights = make_weights(tmp_path / "w", members=2)
    rows, note = cnn_scores(weights)
    assert rows == [] and "no evaluation stored" in note
    call_command(
        "evaluate_inclination",
        "--weights",
        str(weights),
        "--synthetic",
        "24",
        "--wide",
        "12",
        "--galsim",
        "0",
        "--sdss",
        str(tmp_path),
        "--no-tta",
        "--json",
        str(weights / EVALUATION_FILE),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    report = json.loads((weights / EVALUATION_FILE).read_text())
    rows, note = cnn_scores(weights)
    assert note is None
    by = {(r["estimator"], r["test_set"]): r for r in rows}
    own = by[("CNN ensemble", "own synthetic test set (ml.synth)")]
    assert own["n"] == report["synthetic"]["extra"]["n_accepted"] > 0
    assert own["rms"] == pytest.approx(report["synthetic"]["stats"]["ensemble"]["all"]["rms"])
    assert own["source"].startswith("python manage.py evaluate_inclination --weights") and "--wide 12" in own["source"]
    assert ("CNN ensemble", "widened synthetic test set (ml.synth.wide)") in by
    assert ("axis-ratio baseline", "own synthetic test set (ml.synth)") in by
    # other weights in the same folder: the stored figures are not theirs, so none are shown
    make_weights(weights, members=2, seed=5)
    rows, note = cnn_scores(weights)
    assert rows == [] and "other weights" in note


def test_consensus_scores_round_trip(tmp_path):
    rows, note = consensus_scores(tmp_path / "none.json")
    assert rows == [] and "no scores against published inclinations" in note
    path = save_truth_scores(CONSENSUS_RECORD, tmp_path / "s" / "truth.json")
    rows, note = consensus_scores(path)
    assert note is None and len(rows) == 2
    joint = rows[1]
    assert joint["detail"] == "joint 1.0 (default)" and joint["default"] and joint["rms"] == 2.21 and joint["n"] == 155
    assert "155 galaxies" in joint["test_set"] and joint["source"] == CONSENSUS_RECORD["command"]


def test_shipped_weights_carry_their_evaluation():
    """The shipped default ensemble's evaluation.json matches its manifest and holds the own,
    widened, GalSim and SDSS test sets."""
    rows, note = cnn_scores(DEFAULT_WEIGHTS_DIR)
    assert note is None
    sets = {r["test_set"] for r in rows if r["estimator"] == "CNN ensemble"}
    assert sets == {
        "own synthetic test set (ml.synth)",
        "widened synthetic test set (ml.synth.wide)",
        "independent renderer (GalSim)",
        "real SDSS cutouts vs EDD (all images)",
    }
    assert all(r["n"] > 0 and r["rms"] > 0 for r in rows)


@pytest.mark.django_db
def test_galaxy_page_and_compare_show_the_scores(client, tmp_path, settings):
    settings.GALCAT_CONSENSUS_SCORES = str(save_truth_scores(CONSENSUS_RECORD, tmp_path / "truth.json"))
    scores = estimator_scores()
    galsim = next(r for r in scores["rows"] if r["estimator"] == "CNN ensemble" and "GalSim" in r["test_set"])
    GalaxyFactory(pgc=4343)
    for url in ("/galaxies/4343/", "/compare/"):
        html = client.get(url).content.decode()
        block = html.split('id="estimator-scores"', 1)[1].split("</details>", 1)[0]
        assert 'id="estimator-scores-table"' in block
        assert "joint 1.0 (default)" in block and "2.21" in block and "-0.07" in block and ">155<" in block
        assert "independent renderer (GalSim)" in block and f"{galsim['rms']:.2f}" in block and f"{galsim['bias']:+.2f}" in block
        assert "axis-ratio baseline" in block and "profile fits" in block
    settings.GALCAT_CONSENSUS_SCORES = str(tmp_path / "missing.json")
    html = client.get("/compare/").content.decode()
    assert "no scores against published inclinations stored" in html and "joint 1.0 (default)" not in html
