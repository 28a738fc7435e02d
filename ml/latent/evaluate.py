"""Evaluation of the latent model (pure PyTorch/numpy; no Django): retrieval on a held-out
labelled synthetic set, injected anomalies, the domain gap to real cutouts and the latent-dimension
sweep; figures as dicts and as a markdown report (EVALUATION.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ml.latent.anomalies import ANOMALY_KINDS, anomaly_set
from ml.latent.data import render_pool
from ml.latent.density import auroc
from ml.latent.model import LatentModel
from ml.latent.train import TEST_SEED, TrainConfig, augment_real, domain_auroc, encode_arrays, galaxy_of, retrieval_scores, train_latent

#: Seed of the anomaly test set (never a training seed).
ANOMALY_SEED = TEST_SEED + 1
#: Latent dimensions of the sweep (Galaxy_VAE chose its dimension this way).
SWEEP_DIMS = (8, 16, 32, 64, 128)


def evaluate_retrieval(model: LatentModel, n: int = 2000, seed: int = TEST_SEED, k: int = 10) -> dict:
    """Retrieval scores (ml.latent.train.retrieval_scores) on n fresh images of ``seed`` plus the
    VAE's mean squared residual and the mean KL on them."""
    pool = render_pool(seed, n, model.channels)
    ev = encode_arrays(model.net, pool["x"], model.device)
    res = retrieval_scores(ev["embedding"], pool["inc"], pool["cls"], k=k)
    res.update(mse=float(ev["recon_error"].mean()), kl=float(ev["kl"].mean()), seed=seed)
    return res


def evaluate_anomalies(model: LatentModel, n: int = 2000, seed: int = ANOMALY_SEED, prevalence: float = 0.02) -> dict:
    """Injected anomalies at ``prevalence`` among normal disks: AUROC of the outlier score (and
    of its two parts alone), AUROC of each kind against the normals, and how many of the 10 and
    of the first n_anomalies highest scores are anomalies."""
    images, which = anomaly_set(seed, n, prevalence)
    out = model.encode_all(images)
    is_anom = np.array([w is not None for w in which])
    parts = model.density.parts(out["embedding"], out["recon_error"])
    parts["artefact"] = out["artefact"]
    score = out["outlier"]
    order = np.argsort(-score)
    per_kind = {}
    for kind in ANOMALY_KINDS:
        sel = np.array([w in (None, kind) for w in which])
        per_kind[kind] = {"n": int(sum(w == kind for w in which)), "auroc": auroc(score[sel], is_anom[sel])}
    n_anom = int(is_anom.sum())
    return {
        "seed": seed,
        "n": n,
        "n_anomalies": n_anom,
        "prevalence": prevalence,
        "auroc": auroc(score, is_anom),
        "auroc_recon_only": auroc(parts["recon"], is_anom),
        "auroc_density_only": auroc(parts["density"], is_anom),
        "auroc_artefact_only": auroc(parts["artefact"], is_anom),
        "top10_anomalies": int(is_anom[order[:10]].sum()),
        "top_n_anomalies": int(is_anom[order[:n_anom]].sum()),
        "top10_kinds": [which[i] or "normal" for i in order[:10]],
        "per_kind": per_kind,
    }


def evaluate_real(model: LatentModel, files: list[str], synthetic: int = 600, seed: int = TEST_SEED, views: int = 16) -> dict:
    """Domain gap to real cutouts: out-of-fold AUROC of a classifier telling ``views`` augmented
    views of each real file from synthetic images (grouped by galaxy); the outlier score and the
    nearest other real file of each real file."""
    from ml.latent.score import nearest
    from ml.preprocess import load_image_file

    files = sorted(files)
    images = [load_image_file(f) for f in files]
    xr = augment_real(images, model.channels, views, seed)
    er, _ = model.encode_inputs(xr, recon=False)
    groups = np.repeat(np.array([galaxy_of(f) for f in files], dtype=object), views)
    es, _ = model.encode_inputs(render_pool(seed, synthetic, model.channels)["x"].astype(np.float32), recon=False)
    out = model.encode_all(images)
    idx, dist = nearest(out["embedding"], 1)
    rows = [
        {
            "file": Path(f).name,
            "outlier_score": float(out["outlier"][i]),
            "nearest": Path(files[idx[i, 0]]).name if idx.shape[1] else "",
            "distance": float(dist[i, 0]) if idx.shape[1] else float("nan"),
        }
        for i, f in enumerate(files)
    ]
    same_galaxy = (
        float(np.mean([galaxy_of(files[idx[i, 0]]) == galaxy_of(f) for i, f in enumerate(files)])) if idx.shape[1] else float("nan")
    )
    return {
        "files": len(files),
        "galaxies": len(set(groups.tolist())),
        "views_per_file": views,
        "synthetic": synthetic,
        "domain_auroc": domain_auroc(es, er, groups),
        "nearest_is_same_galaxy": same_galaxy,
        "rows": rows,
    }


def sweep(
    dims: tuple[int, ...],
    base: TrainConfig,
    out_dir: str,
    test_n: int = 1000,
    anomaly_n: int = 1000,
    log: Callable[[str], None] = print,
    calibration_n: int = 1500,
) -> list[dict]:
    """Train one short model per latent dimension (``base`` with dim changed, no adaptation), fit
    its outlier score's artefact part as fit_latent_score does (``calibration_n`` validation and
    calibration images; 0: latent parts only) and score each on the held-out sets:
    reconstruction, KL, retrieval, anomalies."""
    from ml.latent.model import load_latent
    from ml.latent.train import VAL_SEED_OFFSET, fit_artefact_part, write_artefact_part

    rows = []
    for d in dims:
        cfg = replace(base, dim=d, out=str(Path(out_dir) / f"dim{d}"), real=[], adapt_steps=0)
        t0 = time.perf_counter()
        card = train_latent(cfg, command=f"sweep dim={d}", log=log)
        m = load_latent(cfg.out, device=cfg.device)
        if calibration_n > 0:
            state = fit_artefact_part(m, cfg.seed + VAL_SEED_OFFSET, normal_images=calibration_n, calibration_images=calibration_n)
            write_artefact_part(Path(cfg.out), state, command=f"sweep dim={d}: fit_artefact_part, {calibration_n} images")
            m = load_latent(cfg.out, device=cfg.device)
        ret = evaluate_retrieval(m, n=test_n)
        kl = ret["kl"]
        an = evaluate_anomalies(m, n=anomaly_n)
        rows.append(
            {
                "dim": d,
                "mse": ret["mse"],
                "kl": kl,
                "inc_ratio": ret["ratio"],
                "inc_median_diff": ret["inc_median_diff"],
                "class_precision": ret["class_precision"],
                "anomaly_auroc": an["auroc"],
                "top10": an["top10_anomalies"],
                "train_seconds": round(time.perf_counter() - t0, 1),
                "config": asdict(cfg),
                "history_last": card["history"][-1] if card["history"] else None,
            }
        )
        log(f"sweep dim {d}: {rows[-1]['mse']:.5f} mse, kl {kl:.1f}, ratio {ret['ratio']:.3f}, p@10 {ret['class_precision']:.3f}")
    return rows


def _f(v: float, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)


def report_markdown(report: dict) -> str:
    """EVALUATION.md of a latent weights folder."""
    lines = [f"# Evaluation: {report['model']} ({report['version']})", "", f"Command: `{report['command']}`", ""]
    r = report.get("retrieval")
    if r:
        lines += [
            f"## Retrieval on a held-out synthetic set (seed {r['seed']}, {r['n']} images, k = {r['k']})",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| median inclination difference to the 10 neighbours (deg) | {_f(r['inc_median_diff'], '.2f')} | |",
            f"| same for random pairs (deg) | {_f(r['random_median_diff'], '.2f')} | |",
            f"| ratio | {_f(r['ratio'])} | <= 0.333 |",
            f"| class precision@10 (disk / face-on / reject) | {_f(r['class_precision'])} | >= 0.9 |",
            *[f"| precision@10, {c} | {_f(v)} | |" for c, v in r["class_precision_by_class"].items()],
            f"| mean squared residual | {_f(r['mse'], '.5f')} | |",
            f"| mean KL (nats) | {_f(r['kl'], '.1f')} | |",
            "",
        ]
    a = report.get("anomalies")
    if a:
        lines += [
            f"## Injected anomalies (seed {a['seed']}, {a['n']} images, {a['n_anomalies']} anomalies = {a['prevalence']:.0%})",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| AUROC, outlier score | {_f(a['auroc'])} | >= 0.95 |",
            f"| AUROC, reconstruction part only | {_f(a['auroc_recon_only'])} | |",
            f"| AUROC, density part only | {_f(a['auroc_density_only'])} | |",
            f"| AUROC, artefact part only (ties at 0 count half) | {_f(a.get('auroc_artefact_only'))} | |",
            f"| anomalies among the 10 highest scores | {a['top10_anomalies']} | >= 8 |",
            f"| anomalies among the {a['n_anomalies']} highest scores | {a['top_n_anomalies']} | |",
            "",
            "| kind | n | AUROC against the normals |",
            "|---|---|---|",
            *[f"| {k} | {v['n']} | {_f(v['auroc'])} |" for k, v in a["per_kind"].items()],
            "",
            f"The 10 highest: {', '.join(a['top10_kinds'])}.",
            "",
        ]
    d = report.get("real")
    if d:
        lines += [
            f"## Real SDSS cutouts ({d['files']} files of {d['galaxies']} galaxies)",
            "",
            f"Domain gap of the shipped model: AUROC {_f(d['domain_auroc'])} of a logistic regression telling "
            f"{d['views_per_file']} augmented views of each real file from {d['synthetic']} synthetic images "
            "(out-of-fold, whole galaxies held out; 0.5 = no gap). The nearest other file is of the same galaxy for "
            f"{_f(d['nearest_is_same_galaxy'])} of the files.",
            "",
            "| file | outlier score | nearest other file | cosine distance |",
            "|---|---|---|---|",
            *[f"| {x['file']} | {x['outlier_score']:.2f} | {x['nearest']} | {x['distance']:.4f} |" for x in d["rows"]],
            "",
        ]
    ad = report.get("adaptation")
    if ad:
        lines += [
            "## Survey adaptation (from the model card)",
            "",
            "| real galaxies | before | after |",
            "|---|---|---|",
            f"| held out of the adaptation ({', '.join(ad['held_out_galaxies'])}) | {_f(ad['auroc_before']['held_out'])} | "
            f"{_f(ad['auroc_after']['held_out'])} |",
            f"| used in the adaptation ({', '.join(ad['adaptation_galaxies'])}) | {_f(ad['auroc_before']['adaptation_set'])} | "
            f"{_f(ad['auroc_after']['adaptation_set'])} |",
            "",
            "AUROC of a domain classifier on embeddings (0.5 = no gap). The real domain is 10 galaxies (g, r, i and gri "
            "files, with crops, rotations and flips): far too few to claim survey-level alignment; the figures show the "
            "direction of the change only.",
            "",
        ]
    s = report.get("sweep")
    if s:
        lines += [
            "## Latent-dimension sweep",
            "",
            s["note"],
            "",
            "| dim | mean sq. residual | KL (nats) | inc ratio | class p@10 | anomaly AUROC | top-10 anomalies | train s |",
            "|---|---|---|---|---|---|---|---|",
            *[
                f"| {x['dim']} | {x['mse']:.5f} | {x['kl']:.1f} | {_f(x['inc_ratio'])} | {_f(x['class_precision'])} | "
                f"{_f(x['anomaly_auroc'])} | {x['top10']} | {x['train_seconds']} |"
                for x in s["rows"]
            ],
            "",
        ]
    return "\n".join(lines)
