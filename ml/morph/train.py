"""Training of the morphology networks (pure PyTorch): render, train, calibrate, write weights.

One network per model kind (Sérsic, bulge+disk), each on its own rendered set of cutouts of
every side in ``sizes``. After training, the predicted standard deviations are scaled per
target so that the normalised residuals of a validation set (its own seed) have unit standard
deviation, and the folder gets ``ensemble.json`` (files and sha256), ``<kind>.pt``,
``<kind>.json`` and ``model_card.json``.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ml.morph.nets import VIEW, MorphNet, gaussian_nll, mc_dropout, preprocess
from ml.morph.render import MorphConfig, render_set
from ml.morph.targets import TARGETS, to_targets
from ml.weights_files import sha256_file

#: Seeds of validation sets are the training seed + VAL_SEED_OFFSET; the held-out test set of
#: evaluate_morphology uses TEST_SEED, which no training run uses.
VAL_SEED_OFFSET = 500_000
TEST_SEED = 777_777
ARCHITECTURE = "crop head (spatial transformer, one zoom, identity start) + 7-layer CNN (widths w, 2w, 4w) + MLP covariance head"


@dataclass
class TrainConfig:
    kinds: tuple[str, ...] = ("sersic", "bulge_disk")
    images: int = 8192  # per kind, split over the sizes
    sizes: tuple[int, ...] = (64, 128)
    val_images: int = 1024
    epochs: int = 6
    seed: int = 1
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 16
    dropout: float = 0.1
    threads: int = 1
    device: str = "cpu"
    out: str = "ml/weights/morph"
    extra: dict = field(default_factory=dict)


def render_training(kind: str, n: int, sizes: tuple[int, ...], seed: int) -> list[dict]:
    """One rendered set per side (n split evenly), without sigma maps."""
    per = max(1, n // len(sizes))
    return [render_set(MorphConfig(kind=kind, size=s, n=per, seed=seed * 1000 + s, keep_sigma=False)) for s in sizes]


def _tensors(kind: str, sets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per side: (x [N, 1, S, S] float16, extras [N, E], targets [N, K])."""
    out = []
    for d in sets:
        size = d["images"].shape[-1]
        x, ex = preprocess(torch.from_numpy(d["images"]), torch.from_numpy(d["noise"]), torch.from_numpy(d["fwhm"]))
        t = to_targets(kind, d["truth"], torch.full((len(d["noise"]),), float(size)), torch.from_numpy(d["noise"])).float()
        out.append((x.half(), ex, t))
    return out


@torch.no_grad()
def _val_stats(net: MorphNet, data, device) -> tuple[float, torch.Tensor]:
    """Mean validation NLL and the normalised residuals Delta_k / sigma_k [N, K] (calibration off)."""
    mc_dropout(net, False)
    cal = net.calibration.clone()
    net.calibration.fill_(1.0)
    nll, zs, count = 0.0, [], 0
    for x, ex, t in data:
        for b0 in range(0, x.shape[0], 256):
            xb, eb, tb = x[b0 : b0 + 256].to(device).float(), ex[b0 : b0 + 256].to(device), t[b0 : b0 + 256].to(device)
            mean, log_var, off, _ = net(xb, eb)
            nll += float(gaussian_nll(tb, mean, log_var, off, net.scale()).sum())
            zs.append(((tb - mean) * torch.exp(-0.5 * log_var)).cpu())
            count += xb.shape[0]
    net.calibration.copy_(cal)
    return nll / max(count, 1), torch.cat(zs)


def train_kind(kind: str, cfg: TrainConfig, log: Callable[[str], None] = print, progress: Callable | None = None) -> tuple[MorphNet, dict]:
    """Render, train and calibrate the network of one kind; returns (net, card entry)."""
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    train = _tensors(kind, render_training(kind, cfg.images, cfg.sizes, cfg.seed))
    val = _tensors(kind, render_training(kind, cfg.val_images, cfg.sizes, cfg.seed + VAL_SEED_OFFSET))
    render_s = time.perf_counter() - t0
    log(
        f"{kind}: rendered {sum(len(t[0]) for t in train)} training and {sum(len(t[0]) for t in val)} validation cutouts in {render_s:.0f} s"
    )
    k = len(TARGETS[kind])
    net = MorphNet(k, width=cfg.width, dropout=cfg.dropout).to(dev)
    allt = torch.cat([t[2] for t in train])
    net.target_mean.copy_(allt.mean(0))
    net.target_std.copy_(allt.std(0).clamp_min(1e-3))
    batches = [(g, b0) for g, (x, _, _) in enumerate(train) for b0 in range(0, x.shape[0] - cfg.batch_size + 1, cfg.batch_size)]
    steps = cfg.epochs * len(batches)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.15)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    step = 0
    t1 = time.perf_counter()
    for epoch in range(cfg.epochs):
        net.train()
        perms = [torch.randperm(x.shape[0], generator=gen) for x, _, _ in train]
        order = torch.randperm(len(batches), generator=gen).tolist()
        total, count = 0.0, 0
        for j in order:
            g, b0 = batches[j]
            x, ex, t = train[g]
            idx = perms[g][b0 : b0 + cfg.batch_size]
            mean, log_var, off, _ = net(x[idx].to(dev).float(), ex[idx].to(dev))
            loss = gaussian_nll(t[idx].to(dev), mean, log_var, off, net.scale()).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if progress is not None:
                progress(step, steps)
        val_nll, _ = _val_stats(net, val, dev)
        history.append({"epoch": epoch + 1, "train_nll": total / max(count, 1), "val_nll": val_nll})
        log(f"{kind}: epoch {epoch + 1}/{cfg.epochs} train NLL {total / max(count, 1):.3f} validation NLL {val_nll:.3f}")
    train_s = time.perf_counter() - t1
    _, z = _val_stats(net, val, dev)
    calib = torch.tensor([float(_robust_std(z[:, j])) for j in range(k)])
    net.calibration.copy_(calib.clamp(0.3, 3.0).to(dev))
    val_nll_cal, _ = _val_stats(net, val, dev)
    entry = {
        "kind": kind,
        "targets": list(TARGETS[kind]),
        "history": history,
        "calibration": [round(float(c), 4) for c in calib],
        "val_nll_calibrated": val_nll_cal,
        "render_seconds": round(render_s, 1),
        "train_seconds": round(train_s, 1),
        "steps": step,
        "images_seen": step * cfg.batch_size,
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    return net, entry


def _robust_std(z: torch.Tensor) -> float:
    """Standard deviation of z after clipping at 5 MAD-sigmas (a few catastrophic misses must not
    set the scale of everyone's error bars)."""
    z = z[torch.isfinite(z)]
    med = z.median()
    mad = 1.4826 * (z - med).abs().median()
    keep = (z - med).abs() < 5 * mad
    return float(z[keep].std())


def save_net(net: MorphNet, kind: str, cfg: TrainConfig, directory: Path) -> str:
    meta = {"kind": kind, "width": cfg.width, "dropout": cfg.dropout, "view": VIEW, "targets": list(TARGETS[kind])}
    path = directory / f"{kind}.pt"
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "meta": json.dumps(meta)}, path)
    (directory / f"{kind}.json").write_text(json.dumps(meta, indent=1))
    return sha256_file(path)


def train_all(cfg: TrainConfig, command: str, log: Callable[[str], None] = print, progress: Callable | None = None) -> dict:
    """Train every kind of cfg.kinds into cfg.out; returns the model card (also written there)."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    members, entries = [], []
    for kind in cfg.kinds:
        net, entry = train_kind(kind, cfg, log=log, progress=progress)
        sha = save_net(net, kind, cfg, out)
        members.append({"file": f"{kind}.pt", "sha256": sha, "kind": kind})
        entries.append({**entry, "file": f"{kind}.pt", "sha256": sha})
    manifest = {"name": "morph-synth", "task": "morphology", "architecture": ARCHITECTURE, "members": members}
    (out / "ensemble.json").write_text(json.dumps(manifest, indent=1))
    card = {
        "name": "morph-synth",
        "command": command,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "training_data": {
            "kind": "fitting.engine renders (ml.morph.render)",
            "images_per_kind": cfg.images,
            "sizes": list(cfg.sizes),
            "seeds": [cfg.seed * 1000 + s for s in cfg.sizes],
            "validation_seeds": [(cfg.seed + VAL_SEED_OFFSET) * 1000 + s for s in cfg.sizes],
            "render": {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in MorphConfig().as_dict().items() if k not in ("n", "seed", "size")
            },
        },
        "members": entries,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "machine": {"torch": torch.__version__, "python": platform.python_version(), "device": cfg.device, "threads": cfg.threads},
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=1))
    (out / "MODEL_CARD.md").write_text(card_markdown(card))
    return card


def card_markdown(card: dict) -> str:
    """MODEL_CARD.md from model_card.json."""
    td = card["training_data"]
    lines = [
        "# Morphology posterior networks (ml.morph)",
        "",
        f"Made by: `{card['command']}`",
        "",
        f"Architecture: {ARCHITECTURE}. Machine: torch {card['machine']['torch']}, {card['machine']['device']}, "
        f"{card['machine']['threads']} threads; {card['wall_seconds']:.0f} s wall time in all.",
        "",
        f"Training data: {td['kind']}, {td['images_per_kind']} cutouts per model over sides {td['sizes']} px "
        f"(seeds {td['seeds']}; validation seeds {td['validation_seeds']}); Sérsic and bulge+disk with Moffat/Gaussian PSF "
        "FWHM 1.5-5 px, Poisson + sky noise, SNR 10-200, re 1-25 px (at most 0.2 of the side), a neighbour in half the cutouts.",
        "",
        "| model | parameters | steps | images seen | render s | train s | final train NLL | validation NLL (calibrated) | sigma calibration per target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in card["members"]:
        cal = ", ".join(f"{t} {c:.2f}" for t, c in zip(m["targets"], m["calibration"], strict=True))
        lines.append(
            f"| {m['kind']} | {m['parameters']} | {m['steps']} | {m['images_seen']} | {m['render_seconds']:.0f} | {m['train_seconds']:.0f} "
            f"| {m['history'][-1]['train_nll']:.3f} | {m['val_nll_calibrated']:.3f} | {cal} |"
        )
    lines += ["", "Files and sha256: see ensemble.json (loading refuses a mismatch). Evaluation: EVALUATION.md.", ""]
    return "\n".join(lines)
