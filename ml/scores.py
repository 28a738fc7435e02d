"""Scores of each inclination estimator where they are known: RMS, bias and N against data kept
apart from development. One function, :func:`estimator_scores`, feeds the galaxy page, /compare/
and the tests; the figures themselves are stored by the commands that measured them:

- CNN ensemble and the axis-ratio baseline: ``<weights dir>/evaluation.json``, written by
  ``evaluate_inclination --json`` for those weights (own synthetic test set, widened synthetic
  set, the independent GalSim renderer, real SDSS cutouts against EDD). Shown only while the
  member sha256 it records match the weights' manifest, so retrained weights never show the
  figures of the old ones.
- Consensus methods: ``settings.GALCAT_CONSENSUS_SCORES``, written by ``consensus_report --truth
  FILE --save-scores`` (held-out published inclinations).
- Profile fits: no fit has been scored against known inclinations; listed as not measured.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from zoo.conf import conf as zoo_conf
from zoo.consensus import load_truth_scores

#: The test sets of evaluate_inclination's report, in the order shown.
CNN_TEST_SETS = (
    ("synthetic", "own synthetic test set (ml.synth)"),
    ("wide", "widened synthetic test set (ml.synth.wide)"),
    ("galsim", "independent renderer (GalSim)"),
    ("sdss", "real SDSS cutouts vs EDD (all images)"),
)
EVALUATION_FILE = "evaluation.json"


def _row(estimator: str, detail: str, test_set: str, stats: dict, source: str, default: bool = False) -> dict:
    return {
        "estimator": estimator,
        "detail": detail,
        "test_set": test_set,
        "n": int(stats["n"]),
        "rms": float(stats["rms"]),
        "bias": float(stats["bias"]),
        "source": source,
        "default": default,
    }


@lru_cache(maxsize=8)
def _read_json(path: str, mtime_ns: int) -> dict:
    return json.loads(Path(path).read_text())


def _cached_json(path: Path) -> dict | None:
    try:
        return _read_json(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError:
        return None


def cnn_scores(weights_dir: str | Path) -> tuple[list[dict], str | None]:
    """Rows of the CNN ensemble and the axis-ratio baseline from weights_dir/evaluation.json, and
    a note when there are none (no file, or one measured on other weights)."""
    weights_dir = Path(weights_dir)
    report = _cached_json(weights_dir / EVALUATION_FILE)
    manifest = _cached_json(weights_dir / "ensemble.json")
    if report is None or manifest is None:
        return [], f"CNN: no evaluation stored with the weights in {weights_dir.name}/ (run evaluate_inclination --json {EVALUATION_FILE})"
    shipped = {m["file"]: m["sha256"] for m in manifest["members"]}
    if report.get("member_sha256") != shipped:
        return [], "CNN: the stored evaluation was measured on other weights than the active ones"
    name = report.get("name") or manifest.get("name", "")
    source = report.get("command", "evaluate_inclination")
    rows = []
    for key, label in CNN_TEST_SETS:
        part = report.get(key)
        if not part:
            continue
        stats = part["stats"]
        if key == "sdss":
            if "all" not in stats:
                continue
            stats = stats["all"]
        if "ensemble" in stats:
            rows.append(_row("CNN ensemble", name, label, stats["ensemble"]["all"], source, default=True))
        for est, s in stats.items():
            if est.startswith("axis_ratio q0="):
                rows.append(_row("axis-ratio baseline", est.removeprefix("axis_ratio ").replace("q0=", "q0 = "), label, s["all"], source))
    return rows, None


def consensus_scores(path: str | Path | None = None) -> tuple[list[dict], str | None]:
    """Rows of the consensus methods against held-out published inclinations."""
    record = load_truth_scores(path)
    if record is None:
        return [], "consensus: no scores against published inclinations stored (consensus_report --truth FILE --save-scores)"
    label = f"held-out published inclinations ({record['n_common']} galaxies, >= {record['min_votes']} votes)"
    rows = [
        _row(
            "volunteer consensus",
            f"{m['method']} {m['version']}" + (" (default)" if m["default"] else ""),
            label,
            m,
            record["command"],
            m["default"],
        )
        for m in record["methods"]
        if m.get("n")
    ]
    return rows, None


def estimator_scores(weights_dir: str | Path | None = None, consensus_path: str | Path | None = None) -> dict:
    """Every estimator's known scores: {"rows": [{estimator, detail, test_set, n, rms, bias,
    source, default}], "notes": [why an estimator has none]}. weights_dir defaults to the active
    inclination model's weights (else the shipped default); consensus_path to
    settings.GALCAT_CONSENSUS_SCORES."""
    if weights_dir is None:
        from ml.models import ModelVersion
        from ml.services import weights_dir as mv_dir
        from ml.weights_files import default_weights_dir

        mv = ModelVersion.objects.filter(active=True, task=ModelVersion.Task.INCLINATION).first()
        weights_dir = mv_dir(mv) if mv else default_weights_dir()
    cnn, cnn_note = cnn_scores(weights_dir)
    cons, cons_note = consensus_scores(consensus_path or zoo_conf.CONSENSUS_SCORES)
    notes = [n for n in (cnn_note, cons_note) if n]
    notes.append("profile fits (axis-ratio inclination of the fitted b/a): not yet scored against known inclinations")
    return {"rows": cnn + cons, "notes": notes}
