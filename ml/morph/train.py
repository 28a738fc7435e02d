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

from ml.morph.nets import VIEW, ZOOM_MAX, MorphNet, gaussian_nll, mc_dropout, preprocess, zoom_loss, zoom_of
from ml.morph.render import MorphConfig, render_set
from ml.morph.targets import TARGETS, to_targets
from ml.weights_files import checked_manifest, sha256_file

#: Seeds of validation sets are the training seed + VAL_SEED_OFFSET; the held-out test set of
#: evaluate_morphology uses TEST_SEED (and TEST_SEED + 1), which no training run uses.
VAL_SEED_OFFSET = 500_000
TEST_SEED = 777_777
#: Seed of the set the posterior intervals are calibrated on (ml.morph.evaluate.interval_scales):
#: neither a training, validation nor test seed.
CAL_SEED = 888_888
ARCHITECTURE = (
    "crop head (spatial transformer, one zoom per image from a coarse first pass estimating re) + 7-layer CNN "
    "(widths w, 2w, 4w) + MLP covariance head in view units (ln re - ln p, ln flux - 2 ln p)"
)


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
    #: relative share of the training images per side of ``sizes`` (same length), or () for an even split
    size_weights: tuple[float, ...] = ()
    #: a weights folder whose networks start the training (see :func:`warm_start_state`), or ""
    init_from: str = ""
    #: crop head: "radius" (zoom from a radius estimate) or "learned" (GaMPEN's; see ml.morph.nets)
    crop: str = "radius"
    #: upper end of the log-uniform re prior (px) and its cap as a fraction of the cutout side
    re_max: float = MorphConfig.re_range[1]
    re_max_fraction: float = MorphConfig.re_max_fraction
    #: largest zoom of the radius crop head, in cutout sides (beyond the cutout the view reads zero)
    zoom_max: float = ZOOM_MAX
    #: the covariance head reads the PSF's shape besides its FWHM (see ml.morph.nets.MorphNet)
    psf_shape: bool = True
    extra: dict = field(default_factory=dict)

    def render_config(self, **kw) -> MorphConfig:
        """The rendering of the training and validation sets (what MorphConfig does not take from here: kw)."""
        return MorphConfig(re_range=(MorphConfig.re_range[0], self.re_max), re_max_fraction=self.re_max_fraction, **kw)


def split_images(n: int, sizes: tuple[int, ...], weights: tuple[float, ...] = ()) -> list[int]:
    """Cutouts per side: n split in proportion to weights (evenly when there are none)."""
    w = weights or (1.0,) * len(sizes)
    if len(w) != len(sizes) or min(w) <= 0:
        raise ValueError(f"size weights {w} must be positive, one per side of {sizes}")
    return [max(1, round(n * x / sum(w))) for x in w]


def render_training(cfg: TrainConfig, kind: str, n: int, seed: int) -> list[dict]:
    """One rendered set per side of cfg.sizes (n split by :func:`split_images`), without sigma maps."""
    return [
        render_set(cfg.render_config(kind=kind, size=s, n=per, seed=seed * 1000 + s, keep_sigma=False))
        for s, per in zip(cfg.sizes, split_images(n, cfg.sizes, cfg.size_weights), strict=True)
    ]


def warm_start_state(state: dict, crop: str, init_crop: str, psf_shape: bool, init_psf_shape: bool) -> dict:
    """The part of a trained network's state dict that starts a new training. With a crop head of
    the same kind: everything but the per-target sigma calibration (refitted after training), so
    the fine-tune starts from the trained network's own predictions, the target normalisation
    included. Otherwise the CNN and the covariance head only (crop head and normalisation afresh).
    psf_shape / init_psf_shape: whether the new and the trained network read the PSF's shape; a
    new input gets a zero weight in the head's first layer (the input before the last, the pixel
    scale), so the network starts with the same outputs; an input cannot be dropped."""
    if crop == init_crop:
        out = {k: v for k, v in state.items() if k != "calibration"}
    else:
        out = {k: v for k, v in state.items() if k.startswith(("features.", "head."))}
    if init_psf_shape and not psf_shape:
        raise ValueError("the network of these weights reads the PSF's shape; one told the FWHM only cannot start from it")
    if psf_shape and not init_psf_shape:
        w = out["head.0.weight"]
        out["head.0.weight"] = torch.cat([w[:, :-1], torch.zeros_like(w[:, :1]), w[:, -1:]], 1)
    return out


def _tensors(kind: str, sets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per side: (x [N, 1, S, S] float16, extras [N, E], targets [N, K])."""
    out = []
    for d in sets:
        size = d["images"].shape[-1]
        x, ex = preprocess(
            torch.from_numpy(d["images"]), torch.from_numpy(d["noise"]), torch.from_numpy(d["fwhm"]), torch.from_numpy(d["psf_shape"])
        )
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
            mean, log_var, off, _, _ = net(xb, eb)
            nll += float(gaussian_nll(tb, mean, log_var, off, net.scale()).sum())
            zs.append(((tb - mean) * torch.exp(-0.5 * log_var)).cpu())
            count += xb.shape[0]
    net.calibration.copy_(cal)
    return nll / max(count, 1), torch.cat(zs)


def train_kind(
    kind: str, cfg: TrainConfig, log: Callable[[str], None] = print, progress: Callable | None = None, init: dict | None = None
) -> tuple[MorphNet, dict]:
    """Render, train and calibrate the network of one kind; returns (net, card entry). init: the
    state dict (or the part of one, see :func:`warm_start_state`) that starts the network."""
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    train = _tensors(kind, render_training(cfg, kind, cfg.images, cfg.seed))
    val = _tensors(kind, render_training(cfg, kind, cfg.val_images, cfg.seed + VAL_SEED_OFFSET))
    render_s = time.perf_counter() - t0
    log(
        f"{kind}: rendered {sum(len(t[0]) for t in train)} training and {sum(len(t[0]) for t in val)} validation cutouts in {render_s:.0f} s"
    )
    k = len(TARGETS[kind])
    net = MorphNet(TARGETS[kind], width=cfg.width, dropout=cfg.dropout, crop=cfg.crop, zoom_max=cfg.zoom_max, psf_shape=cfg.psf_shape).to(
        dev
    )
    # normalise what the head predicts: the targets less the pixel-scale terms of the zoom the true
    # radius would give
    resid = []
    for x, ex, t in train:
        s = zoom_of(t[:, net.size_target], torch.exp(ex[:, 0]), x.shape[-1], zoom_max=cfg.zoom_max)
        resid.append(t - torch.log(s * x.shape[-1] / VIEW)[:, None] * net.pixel_power.cpu())
    allt = torch.cat(resid)
    net.target_mean.copy_(allt.mean(0))
    net.target_std.copy_(allt.std(0).clamp_min(1e-3))
    if init is not None:
        net.load_state_dict(init, strict=False)
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
            xb, tb = augment(x[idx].to(dev).float(), t[idx].to(dev), TARGETS[kind], int(torch.randint(8, (1,), generator=gen)))
            mean, log_var, off, _, ln_re = net(xb, ex[idx].to(dev))
            loss = gaussian_nll(tb, mean, log_var, off, net.scale())
            if ln_re is not None:
                loss = loss + zoom_loss(ln_re, tb[:, net.size_target])
            loss = loss.mean()
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


def augment(x: torch.Tensor, t: torch.Tensor, names: tuple[str, ...], op: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One of the 8 symmetries of the square applied to a batch x [B, 1, S, S] and its targets
    t [B, K] (names: TARGETS[kind]): bit 0 mirrors x, bit 1 mirrors y, bit 2 swaps x and y.
    Exact for the renders (the centre (S - 1) / 2 maps onto itself): x -> -x takes dx to -dx and
    theta to -theta (g2 to -g2); swapping the axes takes theta to pi/2 - theta (g1 to -g1)."""
    t = t.clone()
    ix, iy, i1, i2 = (names.index(n) for n in ("dx", "dy", "g1", "g2"))
    if op & 1:
        x = x.flip(-1)
        t[:, ix], t[:, i2] = -t[:, ix], -t[:, i2]
    if op & 2:
        x = x.flip(-2)
        t[:, iy], t[:, i2] = -t[:, iy], -t[:, i2]
    if op & 4:
        x = x.transpose(-1, -2)
        t[:, [ix, iy]] = t[:, [iy, ix]]
        t[:, i1] = -t[:, i1]
    return x, t


def _robust_std(z: torch.Tensor) -> float:
    """Standard deviation of z after clipping at 5 MAD-sigmas (a few catastrophic misses must not
    set the scale of everyone's error bars)."""
    z = z[torch.isfinite(z)]
    med = z.median()
    mad = 1.4826 * (z - med).abs().median()
    keep = (z - med).abs() < 5 * mad
    return float(z[keep].std())


def save_net(net: MorphNet, kind: str, cfg: TrainConfig, directory: Path) -> str:
    meta = {"kind": kind, "width": cfg.width, "dropout": cfg.dropout, "view": VIEW, "targets": list(TARGETS[kind]), "crop": net.crop_kind}
    if net.crop_kind == "radius":
        meta["zoom_max"] = cfg.zoom_max
    if net.psf_shape:
        meta["psf_shape"] = True
    path = directory / f"{kind}.pt"
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "meta": json.dumps(meta)}, path)
    (directory / f"{kind}.json").write_text(json.dumps(meta, indent=1))
    return sha256_file(path)


def train_all(cfg: TrainConfig, command: str, log: Callable[[str], None] = print, progress: Callable | None = None) -> dict:
    """Train every kind of cfg.kinds into cfg.out; returns the model card (also written there).
    Weights in cfg.init_from that are missing, fail their sha256 or cannot start these networks
    (ValueError, see :func:`warm_start_state`) raise before anything is written."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    t0 = time.perf_counter()
    members, entries = [], []
    inits, init_files = {}, []
    if cfg.init_from:  # read before anything in cfg.out (perhaps the same folder) is replaced
        for m in checked_manifest(cfg.init_from)["members"]:
            if m["kind"] not in cfg.kinds:
                continue
            saved = torch.load(Path(cfg.init_from) / m["file"], map_location="cpu", weights_only=True)
            init_meta = json.loads(saved["meta"])
            init_crop = init_meta.get("crop", "learned")
            inits[m["kind"]] = warm_start_state(saved["state_dict"], cfg.crop, init_crop, cfg.psf_shape, init_meta.get("psf_shape", False))
            init_files.append({"file": m["file"], "sha256": m["sha256"], "crop_head": "kept" if init_crop == cfg.crop else "afresh"})
    out.mkdir(parents=True, exist_ok=True)  # not before: weights that cannot start this run leave nothing behind
    # the kinds not trained now stay, with their card entries, when cfg.out already holds them
    kept, kept_entries = [], []
    if (out / "ensemble.json").exists():
        old = checked_manifest(out)
        old_card = json.loads((out / "model_card.json").read_text()) if (out / "model_card.json").exists() else {}
        old_entries = {m["kind"]: m for m in old_card.get("members", [])}
        for m in old["members"]:
            if m["kind"] not in cfg.kinds:
                kept.append(m)
                entry = old_entries.get(m["kind"], {"kind": m["kind"], "file": m["file"], "sha256": m["sha256"]})
                meta = json.loads((out / f"{m['kind']}.json").read_text())
                made = {
                    "command": old_card.get("command", ""),
                    "training_data": old_card.get("training_data"),
                    "crop": meta.get("crop", "learned"),
                    "zoom_max": meta.get("zoom_max", ZOOM_MAX),
                    "psf_shape": meta.get("psf_shape", False),
                }
                kept_entries.append({**entry, "made_by": entry.get("made_by", made)})
    for kind in cfg.kinds:
        net, entry = train_kind(kind, cfg, log=log, progress=progress, init=inits.get(kind))
        sha = save_net(net, kind, cfg, out)
        members.append({"file": f"{kind}.pt", "sha256": sha, "kind": kind})
        entries.append({**entry, "file": f"{kind}.pt", "sha256": sha})
    members, entries = members + kept, entries + kept_entries
    (out / "calibration.json").unlink(missing_ok=True)  # fitted for the networks replaced now
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
            "images_per_side": split_images(cfg.images, cfg.sizes, cfg.size_weights),
            "seeds": [cfg.seed * 1000 + s for s in cfg.sizes],
            "validation_seeds": [(cfg.seed + VAL_SEED_OFFSET) * 1000 + s for s in cfg.sizes],
            "render": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in cfg.render_config().as_dict().items()
                if k not in ("n", "seed", "size")
            },
        },
        "members": entries,
        "init_from": {"folder": cfg.init_from, "files": init_files} if cfg.init_from else None,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "machine": {"torch": torch.__version__, "python": platform.python_version(), "device": cfg.device, "threads": cfg.threads},
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=1))
    (out / "MODEL_CARD.md").write_text(card_markdown(card))
    return card


def _prior_text(render: dict) -> str:
    """The re prior of a card's training data (its render settings)."""
    lo, hi = render["re_range"]
    return f"{lo:g}-{hi:g} px log-uniform (at most {render['re_max_fraction']:g} of the side)"


def _started_from_text(init: dict) -> str:
    """ "Started from: FOLDER (files), itself made by: `command`", then the same for the run that
    made that folder (``made_from``), back to the first folder whose command the card records."""
    parts = []
    while init:
        files = ", ".join(
            f"{f['file']} sha256 {f['sha256'][:12]}..., "
            + ("all but the sigma calibration" if f.get("crop_head") == "kept" else "CNN and head; the crop head afresh")
            for f in init.get("files", [])
        )
        text = init["folder"] + (f" ({files})" if files else "")
        if init.get("made_by"):
            text += f", itself made by: `{init['made_by']}`"
        parts.append(text)
        init = init.get("made_from")
    return "Started from: " + "; that run started from: ".join(parts) + "."


def _psf_text(psf_shape: bool) -> str:
    """What a card says its networks are told of the PSF."""
    return "FWHM and shape" if psf_shape else "FWHM only"


def card_markdown(card: dict) -> str:
    """MODEL_CARD.md from model_card.json."""
    td = card["training_data"]
    lines = [
        "# Morphology posterior networks (ml.morph)",
        "",
        f"Made by: `{card['command']}`",
        "",
        f"Architecture: {ARCHITECTURE}; the networks trained in this run see at most {card['config'].get('zoom_max', ZOOM_MAX):g} x "
        f"the cutout's side (zero beyond it) and are told the PSF's {_psf_text(card['config'].get('psf_shape', False))}. Machine: torch {card['machine']['torch']}, {card['machine']['device']}, "
        f"{card['machine']['threads']} threads; {card['wall_seconds']:.0f} s wall time in all.",
        "",
        f"Training data: {td['kind']}, {td['images_per_kind']} cutouts per model over sides {td['sizes']} px "
        f"({', '.join(str(k) for k in td['images_per_side'])} per side) "
        f"(seeds {td['seeds']}; validation seeds {td['validation_seeds']}); Sérsic and bulge+disk with Moffat/Gaussian PSF "
        f"FWHM 1.5-5 px, Poisson + sky noise, SNR 10-200, re {_prior_text(td['render'])}, a neighbour in half the cutouts.",
        "",
        *([_started_from_text(card["init_from"]), ""] if card.get("init_from") else []),
        "| model | parameters | steps | images seen | render s | train s | final train NLL | validation NLL (calibrated) | sigma calibration per target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in card["members"]:
        cal = ", ".join(f"{t} {c:.2f}" for t, c in zip(m["targets"], m["calibration"], strict=True))
        lines.append(
            f"| {m['kind']} | {m['parameters']} | {m['steps']} | {m['images_seen']} | {m['render_seconds']:.0f} | {m['train_seconds']:.0f} "
            f"| {m['history'][-1]['train_nll']:.3f} | {m['val_nll_calibrated']:.3f} | {cal} |"
        )
    for m in card["members"]:
        if m.get("made_by"):
            made = m["made_by"]
            crop = {
                "learned": "one zoom learnt through the loss alone, as GaMPEN's",
                "radius": f"zoom from the radius estimate, at most {made.get('zoom_max', ZOOM_MAX):g} x the side",
            }
            prior = f"; re prior {_prior_text(made['training_data']['render'])}" if made.get("training_data") else ""
            lines += [
                "",
                f"{m['kind']}: kept from an earlier run (crop head: {crop.get(made.get('crop'), '?')}{prior}; told the PSF's "
                f"{_psf_text(made.get('psf_shape', False))}), made by: `{made['command']}`",
            ]
    lines += ["", "Files and sha256: see ensemble.json (loading refuses a mismatch). Evaluation: EVALUATION.md.", ""]
    return "\n".join(lines)
