"""Training of the latent model (pure PyTorch; no Django): render, train, fit the space, write.

1. A labelled synthetic pool of ``images`` inputs from ``seed`` (``ml.synth``, cached as float16)
   and a validation set from ``seed + VAL_SEED_OFFSET``; evaluation uses other seeds.
2. ``epochs`` of the beta-VAE loss plus ``contrastive`` x the supervised contrastive term on
   random horizontal/vertical flips; optional real images (files) join every batch's VAE term.
3. Survey adaptation (``adapt_steps`` > 0 with real files): the encoder continues with a domain
   head behind a gradient reversal that tries to tell synthetic from real embeddings; the
   domain gap (AUROC of a classifier on embeddings, 0.5 = none) is measured before and after on
   real galaxies held out of the adaptation.
4. The space: a 2-D PCA map of the validation embeddings and the outlier density fitted on its
   normal images (disks and face-on disks), neither seen in training.
5. ``DIR/vae.pt``, ``DIR/space.json``, ``DIR/ensemble.json`` (sha256 of each file),
   ``DIR/model_card.json`` and ``DIR/MODEL_CARD.md``.
6. Afterwards (``fit_artefact_part`` / ``write_artefact_part``, the fit_latent_score command):
   the outlier score's artefact part (ml.latent.artefacts) joins space.json's density, scaled on
   the validation seed's normal disks and weighted on a calibration seed of injected anomalies.
"""

from __future__ import annotations

import json
import math
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ml.latent.data import CLASSES, cached_pool, preprocess_latent, synth_config
from ml.latent.density import LatentDensity, auroc, pca_fit
from ml.latent.model import SPACE_FILE, VAE_FILE
from ml.latent.vae import SIGMA_PIX, ConvVAE, DomainHead, normalise, positive_pairs, supcon_loss, vae_loss
from ml.weights_files import sha256_file

VAL_SEED_OFFSET = 1000
#: Seed of the held-out test sets of evaluate_latent (never a training seed).
TEST_SEED = 424_242


def architecture(light: bool) -> str:
    """One line on the network (manifest and model card)."""
    enc, dec = (6, 5) if light else (7, 8)
    return (
        f"ConvVAE{' (light)' if light else ''}: {enc} conv layers (64 -> 4 px, widths w..8w) + linear to (mu, logvar); "
        f"decoder linear + {dec} conv layers with nearest upsampling; cosine embedding = mu / |mu|"
    )


@dataclass
class TrainConfig:
    dim: int = 32
    beta: float = 1.0
    width: int = 16
    #: the lighter encoder/decoder of ConvVAE (about 40 % of the multiply-adds)
    light: bool = True
    channels: int = 1
    images: int = 8000
    val_images: int = 2000
    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 1
    #: weight of the supervised contrastive term (nats per image; 0 = plain VAE)
    contrastive: float = 1000.0
    temperature: float = 0.1
    #: disks within this inclination difference (deg) count as positive pairs
    inc_window: float = 5.0
    sigma_pix: float = SIGMA_PIX
    #: real image files (e.g. the SDSS cutouts): VAE term in training, domain in adaptation
    real: list = field(default_factory=list)
    adapt_steps: int = 0
    adapt_weight: float = 300.0
    #: fraction of the real galaxies (grouped by the pgc in the file name) kept out of the
    #: adaptation to measure the domain gap on
    holdout_fraction: float = 0.5
    threads: int = 1
    device: str = "cpu"
    out: str = "ml/weights/latent"
    cache_dir: str | None = "var/ml_cache"
    max_steps: int | None = None  # tests: stop after this many steps


def _flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    fh = torch.rand(b, generator=g) < 0.5
    fv = torch.rand(b, generator=g) < 0.5
    x = torch.where(fh[:, None, None, None].to(x.device), x.flip(-1), x)
    return torch.where(fv[:, None, None, None].to(x.device), x.flip(-2), x)


def galaxy_of(path: str) -> str:
    """Group key of a real file: its pgc number when the name has one (pgc1844_g.png), else the stem."""
    m = re.search(r"pgc(\d+)", Path(path).name, re.IGNORECASE)
    return m.group(1) if m else Path(path).stem


def augment_real(images: list[np.ndarray], channels: int, per_image: int, seed: int) -> np.ndarray:
    """Inputs [N * per_image, C, 64, 64] of real images under random crops (80-100 % of the
    side, off-centre up to 5 %), 90-degree rotations and flips; the first copy is the image."""
    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        a = np.asarray(im)
        for j in range(per_image):
            if j:
                h, w = a.shape[:2]
                s = int(min(h, w) * rng.uniform(0.8, 1.0))
                y0 = int(np.clip((h - s) / 2 + rng.normal(0, 0.05 * h), 0, h - s))
                x0 = int(np.clip((w - s) / 2 + rng.normal(0, 0.05 * w), 0, w - s))
                b = np.rot90(a[y0 : y0 + s, x0 : x0 + s], int(rng.integers(4)))
                b = b[:, ::-1] if rng.random() < 0.5 else b
            else:
                b = a
            out.append(preprocess_latent(np.ascontiguousarray(b), channels))
    return np.stack(out).astype(np.float32)


@torch.no_grad()
def encode_arrays(net: ConvVAE, x: np.ndarray, device: torch.device, bs: int = 256) -> dict[str, np.ndarray]:
    """Embeddings [N, D] (normalised), mu [N, D], recon_error [N] (mean squared residual), and the
    VAE figures (nll, mse, kl) per image of preprocessed inputs x [N, C, 64, 64]."""
    net.eval()
    emb, mus, err, kls = [], [], [], []
    for k in range(0, len(x), bs):
        xb = torch.from_numpy(np.asarray(x[k : k + bs], dtype=np.float32)).to(device)
        mu, logvar = net.encode(xb)
        r = net.decode(mu)
        emb.append(normalise(mu).cpu().numpy())
        mus.append(mu.cpu().numpy())
        err.append(((r - xb) ** 2).flatten(1).mean(1).cpu().numpy())
        kls.append((0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum(1)).cpu().numpy())
    return {"embedding": np.concatenate(emb), "mu": np.concatenate(mus), "recon_error": np.concatenate(err), "kl": np.concatenate(kls)}


def retrieval_scores(emb: np.ndarray, inc: np.ndarray, cls: np.ndarray, k: int = 10, seed: int = 0) -> dict:
    """Retrieval on a labelled set: for each image its k cosine neighbours (itself excluded).

    inc_median_diff: median over images with an inclination of the median |inc difference| to
    their neighbours that have one; random_median_diff: the same for random pairs; ratio = the
    two divided (target <= 1/3); class_precision: mean fraction of the k neighbours of the same
    class (disk / face-on / reject; target >= 0.9), also per class.
    """
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argsort(-sim, axis=1)[:, :k]
    has = ~np.isnan(inc)
    per = []
    for a in np.where(has)[0]:
        nb = nn[a][has[nn[a]]]
        if len(nb):
            per.append(np.median(np.abs(inc[nb] - inc[a])))
    rng = np.random.default_rng(seed)
    idx = np.where(has)[0]
    i, j = rng.choice(idx, 20000), rng.choice(idx, 20000)
    keep = i != j
    rand = float(np.median(np.abs(inc[i[keep]] - inc[j[keep]])))
    prec = (cls[nn] == cls[:, None]).mean(1)
    med = float(np.median(per)) if per else float("nan")
    return {
        "k": k,
        "inc_median_diff": med,
        "random_median_diff": rand,
        "ratio": med / rand if rand > 0 else float("nan"),
        "class_precision": float(prec.mean()),
        "class_precision_by_class": {CLASSES[c]: float(prec[cls == c].mean()) for c in np.unique(cls)},
        "n": int(len(emb)),
    }


def domain_auroc(syn: np.ndarray, real: np.ndarray, real_groups: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Domain gap: out-of-fold AUROC of an L2 logistic regression telling real from synthetic
    embeddings (0.5 = indistinguishable). Real folds hold out whole galaxies (real_groups), so
    augmented copies of one galaxy never sit on both sides."""
    groups = np.unique(real_groups)
    folds = max(2, min(folds, len(groups)))
    rng = np.random.default_rng(seed)
    gfold = {g: f % folds for f, g in enumerate(rng.permutation(groups))}
    fr = np.array([gfold[g] for g in real_groups])
    fs = rng.integers(0, folds, len(syn))
    x = np.concatenate([syn, real]).astype(np.float64)
    y = np.concatenate([np.zeros(len(syn)), np.ones(len(real))])
    f = np.concatenate([fs, fr])
    pred = np.zeros(len(x))
    for k in range(folds):
        tr, te = f != k, f == k
        w = _logistic(x[tr], y[tr])
        pred[te] = x[te] @ w[:-1] + w[-1]
    return auroc(pred, y == 1)


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 300) -> np.ndarray:
    """Class-balanced L2 logistic regression by Newton steps; returns [D + 1] (weights, bias)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    sw = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    w = np.zeros(xb.shape[1])
    reg = np.eye(xb.shape[1]) * l2
    reg[-1, -1] = 0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        g = xb.T @ (sw * (p - y)) + reg @ w
        h = (xb * (sw * p * (1 - p))[:, None]).T @ xb + reg
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _tensor_pool(pool: dict) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(pool["x"]),
        torch.from_numpy(pool["inc"]),
        torch.from_numpy(pool["cls"].astype(np.int64)),
        torch.from_numpy(pool["kind"].astype(np.int64)),
    )


def train_latent(
    cfg: TrainConfig,
    command: str = "",
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Train, adapt, fit the space and write the weights folder; returns the model card."""
    torch.set_num_threads(cfg.threads)
    dev = torch.device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pool = cached_pool(cfg.seed, cfg.images, cfg.channels, cfg.cache_dir)
    val = cached_pool(cfg.seed + VAL_SEED_OFFSET, cfg.val_images, cfg.channels, cfg.cache_dir)
    render_s = time.perf_counter() - t0
    log(f"pool: {len(pool['x'])} training and {len(val['x'])} validation inputs ({render_s:.0f} s, cache {cfg.cache_dir})")
    real_x, real_groups, real_files = _real_inputs(cfg)
    torch.manual_seed(cfg.seed)
    net = ConvVAE(cfg.channels, cfg.dim, cfg.width, cfg.light).to(dev).to(memory_format=torch.channels_last)
    x, inc, cls, kind = _tensor_pool(pool)
    nb = math.ceil(len(x) / cfg.batch_size)
    steps = cfg.epochs * nb
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    total_steps = steps + (cfg.adapt_steps if len(real_x) else 0)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.1)
    g = torch.Generator().manual_seed(cfg.seed)
    real_t = torch.from_numpy(real_x) if len(real_x) else None
    history: list[dict] = []
    step = 0
    t_train = time.perf_counter()
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.from_numpy(np.random.default_rng([cfg.seed, epoch]).permutation(len(x)))
        sums: dict[str, float] = {}
        count = 0
        for b0 in range(0, len(x), cfg.batch_size):
            if step >= steps:
                break
            idx = order[b0 : b0 + cfg.batch_size]
            xb = x[idx].float().to(dev)
            if real_t is not None:
                ridx = torch.randint(len(real_t), (max(1, cfg.batch_size // 16),), generator=g)
                xb_all = torch.cat([xb, real_t[ridx].to(dev)])
            else:
                xb_all = xb
            xb_all = _flip(xb_all, g).contiguous(memory_format=torch.channels_last)
            o = net(xb_all)
            loss, parts = vae_loss(o, xb_all, cfg.beta, cfg.sigma_pix)
            if cfg.contrastive > 0:
                emb = normalise(o["mu"][: len(xb)])
                pos = positive_pairs(cls[idx].to(dev), kind[idx].to(dev), inc[idx].to(dev), cfg.inc_window)
                con = supcon_loss(emb, pos, cfg.temperature)
                loss = loss + cfg.contrastive * con
                parts["supcon"] = float(con.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 100.0)
            opt.step()
            sched.step()
            parts["loss"] = float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            step += 1
            if progress:
                progress(step, total_steps)
        ev = encode_arrays(net, val["x"], dev)
        rec = {
            "epoch": epoch + 1,
            "train": {k: v / max(count, 1) for k, v in sums.items()},
            "val": {"mse": float(ev["recon_error"].mean()), "kl": float(ev["kl"].mean())},
            "retrieval": retrieval_scores(ev["embedding"], val["inc"], val["cls"]),
            "seconds": round(time.perf_counter() - t_train, 1),
        }
        history.append(rec)
        r = rec["retrieval"]
        log(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {rec['train'].get('loss', float('nan')):.1f} val mse {rec['val']['mse']:.5f} "
            f"kl {rec['val']['kl']:.1f} retrieval inc ratio {r['ratio']:.3f} class p@10 {r['class_precision']:.3f} ({rec['seconds']} s)"
        )
        if step >= steps:
            break
    adaptation = None
    if len(real_x) and cfg.adapt_steps > 0:
        adaptation = adapt(net, cfg, x, cls, kind, inc, real_x, real_groups, dev, log, progress, step, total_steps)
    card = write_weights(net, cfg, val, out, command=command, history=history, adaptation=adaptation, real_files=real_files)
    card["wall_seconds"] = round(time.perf_counter() - t0, 1)
    card["render_seconds"] = round(render_s, 1)
    _write_card(out, card)
    log(f"wrote {out}: {card['val']}; wall {card['wall_seconds']} s")
    return card


def _real_inputs(cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Real files -> augmented inputs and their galaxy groups (16 views per file)."""
    if not cfg.real:
        return np.zeros((0, cfg.channels, 64, 64), np.float32), np.zeros(0, dtype=object), []
    from ml.preprocess import load_image_file

    files = sorted(str(f) for f in cfg.real)
    per = 16
    xs = augment_real([load_image_file(f) for f in files], cfg.channels, per, cfg.seed)
    groups = np.repeat(np.array([galaxy_of(f) for f in files], dtype=object), per)
    return xs, groups, files


def split_groups(groups: np.ndarray, holdout_fraction: float, seed: int) -> tuple[set, set]:
    """Deterministic split of the real galaxies into (adaptation, held-out) sets."""
    uniq = sorted(set(groups.tolist()))
    rng = np.random.default_rng(seed)
    perm = [uniq[i] for i in rng.permutation(len(uniq))]
    n_hold = int(round(holdout_fraction * len(uniq)))
    if len(uniq) >= 2:
        n_hold = min(max(n_hold, 1), len(uniq) - 1)
    return set(perm[n_hold:]), set(perm[:n_hold])


def adapt(net, cfg, x, cls, kind, inc, real_x, real_groups, dev, log, progress, step0, total_steps) -> dict:
    """Adversarial alignment of the encoder (gradient reversal) on the adaptation galaxies; the
    domain gap before and after on the held-out galaxies."""
    adapt_set, hold_set = split_groups(real_groups, cfg.holdout_fraction, cfg.seed)
    in_adapt = np.array([gr in adapt_set for gr in real_groups])
    in_hold = np.array([gr in hold_set for gr in real_groups])
    probe = cached_pool(cfg.seed + VAL_SEED_OFFSET, min(600, cfg.val_images), cfg.channels, cfg.cache_dir)["x"]

    def gap() -> dict:
        es = encode_arrays(net, probe, dev)["embedding"]
        er = encode_arrays(net, real_x, dev)["embedding"]
        res = {"held_out": domain_auroc(es, er[in_hold], real_groups[in_hold]) if in_hold.any() else float("nan")}
        res["adaptation_set"] = domain_auroc(es, er[in_adapt], real_groups[in_adapt]) if in_adapt.any() else float("nan")
        return res

    before = gap()
    log(f"domain gap before adaptation: AUROC {before}")
    head = DomainHead(cfg.dim).to(dev)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr * 0.25, weight_decay=1e-4)
    g = torch.Generator().manual_seed(cfg.seed + 5)
    ra = torch.from_numpy(real_x[in_adapt])
    bs = cfg.batch_size
    hist = []
    for s in range(cfg.adapt_steps):
        net.train()
        idx = torch.randint(len(x), (bs,), generator=g)
        xs = x[idx].float()
        xr = ra[torch.randint(len(ra), (bs // 2,), generator=g)]
        xb = _flip(torch.cat([xs, xr]), g).to(dev).contiguous(memory_format=torch.channels_last)
        o = net(xb)
        loss, parts = vae_loss(o, xb, cfg.beta, cfg.sigma_pix)
        emb = normalise(o["mu"])
        if cfg.contrastive > 0:
            pos = positive_pairs(cls[idx].to(dev), kind[idx].to(dev), inc[idx].to(dev), cfg.inc_window)
            loss = loss + cfg.contrastive * supcon_loss(emb[:bs], pos, cfg.temperature)
        lam = 2.0 / (1.0 + math.exp(-10 * s / max(cfg.adapt_steps, 1))) - 1.0  # Ganin & Lempitsky's schedule
        logit = head(emb, lam)
        y = torch.cat([torch.zeros(bs), torch.ones(len(xr))]).to(dev)
        dloss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
        loss = loss + cfg.adapt_weight * dloss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 100.0)
        opt.step()
        if s % 50 == 0:
            hist.append({"step": s, "domain_bce": float(dloss.detach()), "mse": parts["mse"]})
        if progress:
            progress(step0 + s + 1, total_steps)
    after = gap()
    log(f"domain gap after adaptation: AUROC {after}")
    return {
        "steps": cfg.adapt_steps,
        "weight": cfg.adapt_weight,
        "adaptation_galaxies": sorted(adapt_set),
        "held_out_galaxies": sorted(hold_set),
        "real_views": int(len(real_x)),
        "synthetic_probe": int(len(probe)),
        "auroc_before": before,
        "auroc_after": after,
        "history": hist,
    }


def fit_space(net: ConvVAE, val: dict, dev: torch.device) -> tuple[dict, dict]:
    """The map projection (PCA of all validation embeddings) and the outlier density (fitted on
    the validation set's disks and face-on disks). Returns (space dict, validation figures)."""
    ev = encode_arrays(net, val["x"], dev)
    mean, comps, _ = pca_fit(ev["embedding"].astype(np.float64), 2)
    normal = val["cls"] != 2
    dens = LatentDensity.fit(ev["embedding"][normal], ev["recon_error"][normal], note="validation-seed disks and face-on disks of ml.synth")
    space = {"projection": {"mean": mean.tolist(), "components": comps.tolist()}, "density": dens.state}
    score = dens.score(ev["embedding"], ev["recon_error"])
    figures = {
        "mse": float(ev["recon_error"].mean()),
        "kl": float(ev["kl"].mean()),
        "retrieval": retrieval_scores(ev["embedding"], val["inc"], val["cls"]),
        "reject_vs_normal_auroc": auroc(score, val["cls"] == 2),
    }
    return space, figures


def write_weights(net, cfg: TrainConfig, val: dict, out: Path, command: str, history: list, adaptation, real_files) -> dict:
    net.eval()
    dev = next(net.parameters()).device
    space, figures = fit_space(net, val, dev)
    torch.save({"state_dict": {k: v.contiguous() for k, v in net.state_dict().items()}, "config": net.config}, out / VAE_FILE)
    (out / SPACE_FILE).write_text(json.dumps(space))
    manifest = {
        "name": f"latent-vae-{'gri' if cfg.channels == 3 else 'grey'}-d{cfg.dim}",
        "task": "latent",
        "architecture": architecture(cfg.light),
        "config": net.config,
        "members": [{"file": f, "sha256": sha256_file(out / f)} for f in (VAE_FILE, SPACE_FILE)],
    }
    (out / "ensemble.json").write_text(json.dumps(manifest, indent=1))
    return {
        "name": manifest["name"],
        "task": "latent",
        "architecture": architecture(cfg.light),
        "net_config": net.config,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "training_data": {
            "kind": "synthetic (ml.synth.render_one) 128x128 -> ml.preprocess.preprocess -> 2x2 mean -> 64x64",
            "pool_images": cfg.images,
            "pool_seed": cfg.seed,
            "validation_seed": cfg.seed + VAL_SEED_OFFSET,
            "validation_images": cfg.val_images,
            "synth_config": asdict(synth_config(cfg.channels)),
            "real_files": real_files,
        },
        "train_config": asdict(cfg),
        "command": command,
        "device": str(dev),
        "threads": cfg.threads,
        "host": {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine()},
        "history": history,
        "val": figures,
        "metrics": {
            "validation": figures,
            "domain_auroc": {"before": adaptation["auroc_before"], "after": adaptation["auroc_after"]} if adaptation else None,
        },
        "adaptation": adaptation,
        "files": manifest["members"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _write_card(out: Path, card: dict) -> None:
    (out / "model_card.json").write_text(json.dumps(card, indent=1, default=float))
    (out / "MODEL_CARD.md").write_text(model_card_markdown(card))


def model_card_markdown(card: dict) -> str:
    td, tc, v = card["training_data"], card["train_config"], card["val"]
    r = v["retrieval"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Architecture: {card['architecture']}; {card['parameters']} parameters; config `{json.dumps(card['net_config'])}`.",
        f"Loss: Gaussian reconstruction (sigma_pix {tc['sigma_pix']}) + beta {tc['beta']} x KL"
        + (
            f" + {tc['contrastive']} x supervised contrastive (temperature {tc['temperature']}, positives: same ml.synth kind, "
            f"disks within {tc['inc_window']} deg)"
            if tc["contrastive"] > 0
            else ""
        )
        + ".",
        "",
        "## Training data",
        f"Synthetic galaxies of `ml.synth` (disks, face-on disks, stars, blank sky, mergers, ellipticals, artefacts), "
        f"{td['pool_images']} images from seed {td['pool_seed']}; validation {td['validation_images']} images from seed "
        f"{td['validation_seed']} (the map projection and the outlier density are fitted there).",
    ]
    if td["real_files"]:
        lines.append(
            f"Real images in every batch's reconstruction term: {len(td['real_files'])} files "
            f"({', '.join(Path(f).name for f in td['real_files'])}), 16 augmented views each (crops, 90-degree rotations, flips)."
        )
    lines += ["", "## Exact command", "```", card["command"], "```"]
    lines.append(
        f"Device {card['device']}, {card['threads']} thread(s); render {card.get('render_seconds')} s; wall {card.get('wall_seconds')} s; "
        f"created {card['created']}."
    )
    lines += [
        "",
        "## Validation figures",
        f"- mean squared residual {v['mse']:.5f}, KL {v['kl']:.1f} nats",
        f"- retrieval (k = {r['k']}): median inclination difference to neighbours {r['inc_median_diff']:.2f} deg vs "
        f"{r['random_median_diff']:.2f} deg for random pairs (ratio {r['ratio']:.3f}; target <= 0.333); class precision@10 "
        f"{r['class_precision']:.3f} (target >= 0.9)",
        f"- outlier score, rejects vs disks of the validation set: AUROC {v['reject_vs_normal_auroc']:.3f}",
    ]
    art = card.get("outlier_artefacts")
    if art:
        f = art["fit"]
        lines += [
            "",
            "## Artefact part of the outlier score",
            f"Features of the display values before the percentile scale ({', '.join(art['features'])}; ml.latent.artefacts), "
            f"scaled on the {f['normal_images']} disks and face-on disks among the first images of validation seed "
            f"{f['normal_seed']}; weight {art['weight']} and threshold {art['threshold']} chosen on {f['calibration_images']} "
            f"images of calibration seed {f['calibration_seed']} with {f['calibration_prevalence']:.0%} injected anomalies "
            f"(AUROC there {art['calibration_auroc']:.3f}; expected anomalies among the first 10 of 2000 at 2 %: "
            f"{art['calibration_top10']:.1f}). Written into space.json by:",
            "```",
            art["command"],
            "```",
        ]
    a = card.get("adaptation")
    if a:
        lines += [
            "",
            "## Survey adaptation",
            f"Gradient-reversal domain head, {a['steps']} steps, weight {a['weight']}; adaptation galaxies "
            f"{', '.join(a['adaptation_galaxies'])}; held out {', '.join(a['held_out_galaxies'])} ({a['real_views']} real views "
            f"in all, {a['synthetic_probe']} synthetic probe images). Domain classifier AUROC (0.5 = no gap): held-out galaxies "
            f"{a['auroc_before']['held_out']:.3f} before, {a['auroc_after']['held_out']:.3f} after; adaptation galaxies "
            f"{a['auroc_before']['adaptation_set']:.3f} before, {a['auroc_after']['adaptation_set']:.3f} after. "
            "Ten real galaxies are a very small domain sample: these figures say whether the space separates them, not how "
            "a survey of thousands would fare.",
        ]
    lines += ["", "## Per-epoch history", ""]
    for h in card["history"]:
        hr = h["retrieval"]
        lines.append(
            f"- epoch {h['epoch']}: train loss {h['train'].get('loss', float('nan')):.1f}, val mse {h['val']['mse']:.5f}, "
            f"kl {h['val']['kl']:.1f}, inc ratio {hr['ratio']:.3f}, class p@10 {hr['class_precision']:.3f}, {h['seconds']} s"
        )
    lines += ["", "## Files", ""] + [f"- `{f['file']}` sha256 `{f['sha256']}`" for f in card["files"]]
    lines += ["", "Evaluation (dimension sweep, retrieval, anomalies, domain gap): `python manage.py evaluate_latent`.", ""]
    return "\n".join(lines)


#: Seed of the calibration set of injected anomalies that fixes the artefact part's weight and
#: threshold (neither a training, validation nor evaluation seed).
CALIBRATION_SEED = 31_337


def fit_artefact_part(
    model,
    validation_seed: int,
    normal_images: int = 2000,
    calibration_seed: int = CALIBRATION_SEED,
    calibration_images: int = 1500,
    calibration_prevalence: float = 0.1,
    progress: bool = False,
) -> dict:
    """The artefact part of the outlier score (ml.latent.artefacts) for a LatentModel: feature
    scales on the normal images (disks and face-on disks) among the first ``normal_images`` of the
    validation seed, where the density is fitted; weight and threshold on a calibration set of
    injected anomalies (ml.latent.anomalies, ``calibration_seed``). Returns the part's state."""
    from ml.latent.anomalies import anomaly_set
    from ml.latent.artefacts import fit_combination, fit_scales
    from ml.synth import render_one

    cfg = synth_config(model.channels)
    it = range(normal_images)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"normals seed={validation_seed}", unit="img", mininterval=5)
    normals = []
    for k in it:
        im, lab = render_one(validation_seed, k, cfg)
        if lab["kind"] in ("disk", "faceon"):
            normals.append(im)
    scales = fit_scales(model.artefact_features(normals))
    images, which = anomaly_set(calibration_seed, calibration_images, calibration_prevalence)
    out = model.encode_all(images)
    latent = model.density.latent_score(out["embedding"], out["recon_error"])
    state = fit_combination(model.artefact_features(images), latent, which, scales)
    state["fit"] = {
        "normal_seed": validation_seed,
        "normal_images": len(normals),
        "calibration_seed": calibration_seed,
        "calibration_images": calibration_images,
        "calibration_prevalence": calibration_prevalence,
    }
    return state


def write_artefact_part(directory: Path, state: dict, command: str) -> dict:
    """Put the artefact part into DIR/space.json's density, rewrite the sha256 of ensemble.json
    and the model card (the command that produced the part is recorded). Returns the manifest."""
    space_path = directory / SPACE_FILE
    space = json.loads(space_path.read_text())
    space["density"]["artefacts"] = state
    space_path.write_text(json.dumps(space))
    manifest_path = directory / "ensemble.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["members"] = [{**m, "sha256": sha256_file(directory / m["file"])} for m in manifest["members"]]
    manifest_path.write_text(json.dumps(manifest, indent=1))
    card_path = directory / "model_card.json"
    if card_path.exists():
        card = json.loads(card_path.read_text())
        card["files"] = manifest["members"]
        card["outlier_artefacts"] = {"command": command, **{k: v for k, v in state.items() if k not in ("center", "scale")}}
        if "training_data" in card and "history" in card:
            _write_card(directory, card)
        else:
            card_path.write_text(json.dumps(card, indent=1, default=float))
    return manifest
