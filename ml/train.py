"""Training of the bagged inclination ensemble (pure PyTorch; no Django).

``python -m ml.train --members K --images N --epochs E --seed S --out DIR`` and the management
command ``train_inclination`` both call :func:`train_ensemble`.

- One synthetic pool of N images is rendered from ``seed`` (cached as float16 network inputs);
  member k trains on its own random 80 % subset of it (bagging, Breiman 1996) drawn from
  ``seed + k``; a validation set of ``val_images`` comes from the disjoint seed ``seed + 1000``.
- Every epoch writes a checkpoint; a rerun with the same arguments resumes where it stopped and
  skips finished members.
- Writes ``DIR/member{k}.pt`` (state dict + config), ``DIR/ensemble.json`` (manifest with each
  file's sha256, read by inference), ``DIR/model_card.json`` and ``DIR/MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ml.nets import InclinationNet, inclination_loss
from ml.nets.inclinet import stage_lists
from ml.nets.widen import WIDEN_NOISE, check_widening, widen_inclination_net
from ml.preprocess import NET_SIZE, preprocess
from ml.synth import SynthConfig, render_one
from ml.synth import wide as _wide
from ml.weights_files import WeightsChecksumError, checked_manifest, sha256_file  # noqa: F401 (sha256_file re-exported)

#: Offset between the training seed and the validation seed; evaluation uses other seeds.
VAL_SEED_OFFSET = 1000
#: Fraction of the pool each bagged member sees.
BAG_FRACTION = 0.8
ARCHITECTURE = "InclinationNet VGG-like (3x3 convs, 128x128 grey input, 45-90 deg + logvar + reject)"


def render_inputs(
    seed: int,
    n: int,
    config: SynthConfig | None = None,
    progress: bool = False,
    start: int = 0,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Render images start..start+n-1 of the set ``seed`` through :func:`ml.preprocess.preprocess`.

    Returns x float16 [N, 1, 128, 128], inc float32 [N] (deg, NaN for junk), reject uint8 [N],
    and the label dicts. ``workers`` > 1 renders chunks in that many spawned processes; image k
    depends only on (seed, k), so the result is the same for any number of workers.
    """
    if workers > 1 and n >= 2 * RENDER_CHUNK:
        return _render_parallel(seed, n, config, progress, start, workers)
    x = np.empty((n, 1, 128, 128), dtype=np.float16)
    inc = np.full(n, np.nan, dtype=np.float32)
    rej = np.zeros(n, dtype=np.uint8)
    labels = []
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"render seed={seed}", unit="img", mininterval=5)
    for k in it:
        im, lab = render_one(seed, start + k, config)
        x[k] = preprocess(im)
        inc[k] = lab["inc"]
        rej[k] = lab["reject"]
        labels.append(lab)
    return x, inc, rej, labels


#: Images per task of the parallel renderer.
RENDER_CHUNK = 500


def _render_chunk(args: tuple) -> tuple:
    seed, n, config, start = args
    return render_inputs(seed, n, config, progress=False, start=start)


def _render_parallel(seed: int, n: int, config, progress: bool, start: int, workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    tasks = [(seed, min(RENDER_CHUNK, n - k), config, start + k) for k in range(0, n, RENDER_CHUNK)]
    x = np.empty((n, 1, 128, 128), dtype=np.float16)
    inc = np.empty(n, dtype=np.float32)
    rej = np.empty(n, dtype=np.uint8)
    labels: list[dict] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"render seed={seed} ({workers} processes)", unit="img", mininterval=5)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        for (_, m, _, s0), (xc, ic, rc, lc) in zip(tasks, pool.map(_render_chunk, tasks)):
            k = s0 - start
            x[k : k + m], inc[k : k + m], rej[k : k + m] = xc, ic, rc
            labels += lc
            if bar is not None:
                bar.update(m)
    if bar is not None:
        bar.close()
    return x, inc, rej, labels


def _cache_prefix(seed: int, wide: float) -> str:
    """Cache file prefix of the set ``seed`` (the widened renderer's sets have their own, with its
    version)."""
    return f"synth_seed{seed}" if not wide else f"synth_wide{wide:g}_v{_wide.VERSION}_seed{seed}"


def _cache_path(cache_dir: str | Path, seed: int, n: int, wide: float) -> Path:
    """The render cache file of n images of seed (and the widened renderer's share)."""
    return Path(cache_dir) / f"{_cache_prefix(seed, wide)}_n{n}.npz"


def _largest_smaller_cache(cache_dir: Path, seed: int, n: int, wide: float = 0.0) -> tuple[Path, int] | None:
    """The cache file of the set ``seed`` with the most images below n, if any."""
    best = None
    for p in cache_dir.glob(f"{_cache_prefix(seed, wide)}_n*.npz"):
        try:
            m = int(p.stem.split("_n")[-1])
        except ValueError:
            continue
        if m < n and (best is None or m > best[1]):
            best = (p, m)
    return best


def training_pool(cfg: TrainConfig, progress: bool = False, workers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training pool: cfg.images images of cfg.seed, then as many of each of cfg.extra_seeds
    (each rendered or read from the cache), filled into one preallocated array so that the
    parts are never all held twice."""
    seeds = [cfg.seed, *cfg.extra_seeds]
    if len(seeds) == 1:
        return cached_inputs(cfg.seed, cfg.images, cfg.cache_dir, progress, workers, cfg.wide)
    n = cfg.images
    x = np.empty((n * len(seeds), 1, NET_SIZE, NET_SIZE), np.float16)
    inc = np.empty(n * len(seeds), np.float32)
    rej = np.empty(n * len(seeds), np.uint8)
    for j, seed in enumerate(seeds):
        part = cached_inputs(seed, n, cfg.cache_dir, progress, workers, cfg.wide)
        for whole, piece in zip((x, inc, rej), part):
            whole[j * n : (j + 1) * n] = piece
        del part
    return x, inc, rej


def cached_inputs(seed: int, n: int, cache_dir: str | None, progress: bool = False, workers: int = 1, wide: float = 0.0):
    """render_inputs with an on-disk cache (npz) keyed by seed, n and the widened renderer's share.

    Image k depends only on (seed, k), so a cache of the same seed with fewer images is reused
    as the first part of the set and only the remaining images are rendered.
    """
    start = 0
    head = None
    if cache_dir:
        path = _cache_path(cache_dir, seed, n, wide)
        if path.exists():
            z = np.load(path)
            return z["x"], z["inc"], z["rej"]
        smaller = _largest_smaller_cache(Path(cache_dir), seed, n, wide) if Path(cache_dir).is_dir() else None
        if smaller is not None:
            z = np.load(smaller[0])
            head = (z["x"], z["inc"], z["rej"])
            start = smaller[1]
    config = SynthConfig(wide=wide) if wide else None
    x, inc, rej, _ = render_inputs(seed, n - start, config, progress=progress, start=start, workers=workers)
    if head is not None:
        x, inc, rej = (np.concatenate([a, b]) for a, b in zip(head, (x, inc, rej)))
    if cache_dir:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, inc=inc, rej=rej)
        os.replace(tmp, path)
    return x, inc, rej


@dataclass
class TrainConfig:
    members: int = 3
    images: int = 24000
    epochs: int = 5
    seed: int = 1
    out: str = "ml/weights"
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_images: int = 1000
    threads: int = 1
    #: processes that render the synthetic pool (images depend only on seed and index)
    render_workers: int = 1
    #: members trained at once, each in its own process with threads // jobs torch threads (with
    #: warm_start: members 1.. after member 0, which trains alone with all the threads)
    jobs: int = 1
    #: channels of the convolution stages and width of the hidden layer; None: those of the
    #: --init-from ensemble, else the network's defaults. Wider than --init-from's: its members
    #: are widened first (ml.nets.widen, function-preserving) and trained on from there
    stages: list | None = None
    hidden: int | None = None
    dropout: float = 0.2
    cache_dir: str | None = "var/ml_cache"
    device: str | None = None
    progress: bool = True
    max_steps: int | None = None  # for tests: stop each member after this many steps
    #: members 1..K-1 start from member 0's final weights and train finetune_epochs on their own bag
    warm_start: bool = False
    #: member k starts from DIR/member{k}.pt of an earlier ensemble (checked against its manifest)
    #: and trains on this pool: continued training, e.g. on a larger pool of a new seed
    init_from: str | None = None
    finetune_epochs: int = 1
    finetune_lr_factor: float = 0.3
    #: regression loss = squared error / loss_scale_deg^2 (see ml.nets.inclination_loss)
    loss_scale_deg: float = 5.0
    #: share of pool and validation images drawn by the widened renderer (SynthConfig.wide)
    wide: float = 0.0
    #: further pools of `images` images each (these seeds, same renderer share) appended to the
    #: seed's pool: more distinct images per pass from the render cache (validation stays seed + 1000)
    extra_seeds: tuple = ()


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips (inclination is invariant under both). x [B, 1, H, W]."""
    b = x.shape[0]
    fh = torch.rand(b, generator=g) < 0.5
    fv = torch.rand(b, generator=g) < 0.5
    x = torch.where(fh[:, None, None, None].to(x.device), x.flip(-1), x)
    x = torch.where(fv[:, None, None, None].to(x.device), x.flip(-2), x)
    return x


@torch.no_grad()
def evaluate_arrays(model: torch.nn.Module, x: np.ndarray, inc: np.ndarray, rej: np.ndarray, device, bs=256):
    """Metrics of one model on arrays: rms, mae, bias (deg, accepted only), reject accuracy."""
    model.eval()
    preds, rlog = [], []
    for k in range(0, len(x), bs):
        xb = torch.from_numpy(x[k : k + bs].astype(np.float32)).to(device).contiguous(memory_format=torch.channels_last)
        out = model(xb)
        preds.append(out["inc"].cpu().numpy())
        rlog.append(out["reject_logit"].cpu().numpy())
    p = np.concatenate(preds)
    r = np.concatenate(rlog)
    acc = rej == 0
    d = p[acc] - inc[acc]
    return {
        "rms": float(np.sqrt(np.mean(d * d))),
        "mae": float(np.mean(np.abs(d))),
        "bias": float(np.mean(d)),
        "reject_accuracy": float(np.mean((r > 0) == (rej == 1))),
        "n": int(len(x)),
    }


def train_member(
    k: int,
    cfg: TrainConfig,
    x: np.ndarray,
    inc: np.ndarray,
    rej: np.ndarray,
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    device: torch.device,
    log=print,
) -> dict:
    """Train member k on its bagged subset; resumes from DIR/member{k}.ckpt. Returns its record."""
    out = Path(cfg.out)
    final = out / f"member{k}.pt"
    ckpt = out / f"member{k}.ckpt"
    rng = np.random.default_rng([cfg.seed, k, 7])
    subset = np.sort(rng.choice(len(x), size=int(BAG_FRACTION * len(x)), replace=False))
    torch.manual_seed(cfg.seed * 100 + k)
    stages, hidden = net_widths(cfg)
    model = InclinationNet(stages=stages, dropout=cfg.dropout, hidden=hidden).to(device)
    epochs, lr = cfg.epochs, cfg.lr
    if cfg.init_from:  # files checked by check_config
        init = Path(cfg.init_from) / f"member{k}.pt"
        state = torch.load(init, map_location="cpu", weights_only=True)
        src = InclinationNet(**{**state["config"], "dropout": cfg.dropout})
        src.load_state_dict(state["state_dict"])
        if src.config["stages"] == model.config["stages"] and src.config["hidden"] == hidden:
            model.load_state_dict(src.state_dict())
            log(f"member {k}: continues from {init}")
        else:
            model = widen_inclination_net(src, stages, hidden, seed=cfg.seed * 100 + k).to(device)
            log(f"member {k}: continues from {init}, widened from {src.config['stages']} / {src.config['hidden']} to {stages} / {hidden}")
    elif cfg.warm_start and k > 0:
        state0 = torch.load(out / "member0.pt", map_location=device, weights_only=True)
        model.load_state_dict(state0["state_dict"])
        epochs, lr = cfg.finetune_epochs, cfg.lr * cfg.finetune_lr_factor
        log(f"member {k}: warm start from member 0, {epochs} epoch(s) on its own bag at max lr {lr:g}")
    model = model.to(memory_format=torch.channels_last)
    on_gpu = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay, fused=on_gpu)
    if on_gpu:
        # the float16 pool lives on the GPU (0.5 GB per 16,000 images): batches are gathered there
        # instead of being copied from host memory at every step
        x_dev = torch.from_numpy(x).to(device)
        inc_dev = torch.from_numpy(np.nan_to_num(inc, nan=67.5)).to(device)
        rej_dev = torch.from_numpy(rej.astype(np.float32)).to(device)
    steps_per_epoch = math.ceil(len(subset) / cfg.batch_size)
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    history: list[dict] = []
    start_epoch = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
        log(f"member {k}: resuming after epoch {state['epoch'] + 1}")
    g = torch.Generator().manual_seed(cfg.seed * 1000 + k)
    t0 = time.time()
    for epoch in range(start_epoch, epochs):
        perm_rng = np.random.default_rng([cfg.seed, k, epoch])
        order = subset[perm_rng.permutation(len(subset))]
        model.train()
        sums: dict[str, float] = {}
        nb = 0
        it = range(0, len(order), cfg.batch_size)
        if cfg.progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"member {k} epoch {epoch + 1}/{epochs}", unit="batch", mininterval=10)
        te = time.time()
        for b0 in it:
            idx = np.sort(order[b0 : b0 + cfg.batch_size])
            if on_gpu:
                ib = torch.from_numpy(idx).to(device)
                xb, yb, rb = x_dev[ib].float(), inc_dev[ib], rej_dev[ib]
            else:
                xb = torch.from_numpy(x[idx].astype(np.float32))
                yb = torch.from_numpy(np.nan_to_num(inc[idx], nan=67.5))
                rb = torch.from_numpy(rej[idx].astype(np.float32))
            xb = _augment(xb, g).contiguous(memory_format=torch.channels_last)
            outb = model(xb)
            loss, parts = inclination_loss(outb, yb, rb, scale_deg=cfg.loss_scale_deg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for kk, v in parts.items():
                sums[kk] = sums.get(kk, 0.0) + v
            nb += 1
            if cfg.max_steps and nb >= cfg.max_steps:
                break
        train = {kk: v / max(nb, 1) for kk, v in sums.items()}
        vm = evaluate_arrays(model, *val, device)
        rec = {
            "epoch": epoch + 1,
            "train": train,
            "val": vm,
            "seconds": round(time.time() - te, 1),
            "lr": sched.get_last_lr()[0],
        }
        history.append(rec)
        log(
            f"member {k} epoch {epoch + 1}: loss {train['loss']:.3f} train_rms {math.sqrt(train['mse']):.2f} "
            f"val_rms {vm['rms']:.2f} val_bias {vm['bias']:+.2f} reject_acc {vm['reject_accuracy']:.3f} "
            f"({rec['seconds']} s)"
        )
        tmp = ckpt.with_suffix(".tmp")
        torch.save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "history": history, "epoch": epoch},
            tmp,
        )
        os.replace(tmp, ckpt)
        if cfg.max_steps:
            break
    model.eval()
    torch.save({"state_dict": model.state_dict(), "config": model.config, "member": k}, final)
    return {
        "member": k,
        "file": final.name,
        "sha256": sha256_file(final),
        "train_subset_size": int(len(subset)),
        "history": history,
        "val": history[-1]["val"] if history else None,
        "seconds": round(time.time() - t0, 1),
    }


def _init_net_config(cfg: TrainConfig) -> dict | None:
    """The net config of the --init-from ensemble (from its manifest), or None."""
    if not cfg.init_from:
        return None
    return json.loads((Path(cfg.init_from) / "ensemble.json").read_text()).get("config")


def net_widths(cfg: TrainConfig) -> tuple[list, int]:
    """(stages, hidden) the members get: cfg's, else the --init-from ensemble's, else the defaults."""
    init = _init_net_config(cfg) or {}
    default = InclinationNet().config
    stages = cfg.stages or init.get("stages") or default["stages"]
    hidden = cfg.hidden or init.get("hidden") or default["hidden"]
    return stage_lists(stages), int(hidden)


def parse_stages(text: str) -> list[list[int]]:
    """'8,16,32,64+64,128' -> [[8], [16], [32], [64, 64], [128]] (a '+' joins the convolutions of one stage)."""
    try:
        stages = [[int(c) for c in part.split("+")] for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--stages {text!r}: expected channels like 8,16,32,64+64,128") from None
    if not stages or any(c < 1 for st in stages for c in st):
        raise ValueError(f"--stages {text!r}: every stage needs positive channel counts")
    return stages


def parse_seeds(text: str) -> tuple[int, ...]:
    """'9,11' -> (9, 11)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--extra-seeds {text!r}: expected seeds like 9,11") from None


def format_stages(stages: list) -> str:
    """The --stages text of stages (inverse of parse_stages)."""
    return ",".join("+".join(str(c) for c in st) for st in stages)


def format_seeds(seeds) -> str:
    """The --extra-seeds text of seeds (inverse of parse_seeds)."""
    return ",".join(map(str, seeds))


def check_config(cfg: TrainConfig) -> None:
    """ValueError for a configuration that cannot run: --init-from with --warm-start, an
    --init-from folder without a checked member file for every member, or widths that the
    --init-from members cannot be widened to."""
    if len({cfg.seed, *cfg.extra_seeds}) != 1 + len(cfg.extra_seeds) or cfg.seed + VAL_SEED_OFFSET in cfg.extra_seeds:
        raise ValueError("--extra-seeds: each pool seed once, and not the validation seed")
    if cfg.stages is not None and NET_SIZE % 2 ** len(cfg.stages):
        raise ValueError(f"--stages: {len(cfg.stages)} stages do not divide the 128 px input")
    if not cfg.init_from:
        return
    if cfg.warm_start:
        raise ValueError("--init-from and --warm-start exclude each other")
    if not (Path(cfg.init_from) / "ensemble.json").exists():
        raise ValueError(f"--init-from {cfg.init_from}: no ensemble.json there")
    try:
        checked_manifest(cfg.init_from, [f"member{k}.pt" for k in range(cfg.members)])
    except FileNotFoundError as exc:
        raise ValueError(f"--init-from {cfg.init_from}: {exc}") from exc
    except WeightsChecksumError as exc:
        raise ValueError(f"--init-from: sha256 differs from {cfg.init_from}/ensemble.json ({exc})") from exc
    init = _init_net_config(cfg)
    if init:
        stages, hidden = net_widths(cfg)
        try:
            check_widening(init, stages, hidden)
        except ValueError as exc:
            raise ValueError(f"--init-from {cfg.init_from}: {exc}") from exc


def _member_done(out: Path, k: int) -> bool:
    return (out / f"member{k}.pt").exists() and (out / f"member{k}.json").exists() and not (out / f"member{k}.ckpt").exists()


def _finish_member(out: Path, rec: dict) -> None:
    (out / f"member{rec['member']}.json").write_text(json.dumps(rec, indent=1))
    (out / f"member{rec['member']}.ckpt").unlink(missing_ok=True)


def _member_job(k: int, cfg: TrainConfig, device: str) -> None:
    """Train member k in a worker process (pool and validation set from the render cache)."""
    torch.set_num_threads(_threads_per_job(cfg))
    x, inc, rej = training_pool(cfg)
    val = cached_inputs(cfg.seed + VAL_SEED_OFFSET, cfg.val_images, cfg.cache_dir, wide=cfg.wide)
    quiet = TrainConfig(**{**asdict(cfg), "progress": False})
    _finish_member(Path(cfg.out), train_member(k, quiet, x, inc, rej, val, torch.device(device), lambda s: print(s, flush=True)))


def _threads_per_job(cfg: TrainConfig) -> int:
    """cfg.threads is the run's CPU budget: parallel members share it."""
    return max(1, cfg.threads // max(cfg.jobs, 1))


def _train_members_in_parallel(cfg: TrainConfig, members: list[int], device: torch.device, log) -> None:
    """Members in up to cfg.jobs spawned processes; each reads the pool from the render cache
    (renders it again without one) and writes its own checkpoints, weights and record."""
    if not members:
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    jobs = min(cfg.jobs, len(members))
    log(f"members {members}: {jobs} processes x {_threads_per_job(cfg)} thread(s) on {device}")
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        for f in [pool.submit(_member_job, k, cfg, str(device)) for k in members]:
            f.result()


def train_ensemble(cfg: TrainConfig, command: str | None = None, log=print) -> dict:
    """Render the pool, train cfg.members bagged members, write weights, manifest and model card."""
    check_config(cfg)
    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    stages, hidden = net_widths(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    seeds = [cfg.seed, *cfg.extra_seeds]
    log(f"rendering {cfg.images} training images per seed (seeds {', '.join(map(str, seeds))}) and {cfg.val_images} validation images")
    pool_cached = bool(cfg.cache_dir) and all(_cache_path(cfg.cache_dir, s, cfg.images, cfg.wide).exists() for s in seeds)
    x, inc, rej = training_pool(cfg, cfg.progress, cfg.render_workers)
    val = cached_inputs(cfg.seed + VAL_SEED_OFFSET, cfg.val_images, cfg.cache_dir, cfg.progress, cfg.render_workers, cfg.wide)
    t_render = time.time() - t0
    fresh: set[int] = set()
    if cfg.jobs > 1:
        first = 1 if cfg.warm_start else 0
        if first and not _member_done(out, 0):
            _finish_member(out, train_member(0, cfg, x, inc, rej, val, device, log))
            fresh.add(0)
        pending = [k for k in range(first, cfg.members) if not _member_done(out, k)]
        _train_members_in_parallel(cfg, pending, device, log)
        fresh.update(pending)
    records = []
    for k in range(cfg.members):
        if _member_done(out, k):
            rec = json.loads((out / f"member{k}.json").read_text())
            if k not in fresh:
                log(f"member {k}: already trained, skipping")
        else:
            rec = train_member(k, cfg, x, inc, rej, val, device, log)
            _finish_member(out, rec)
        records.append(rec)
        # a usable (partial) ensemble after every member
        manifest = {
            "name": "inclinet-synth",
            "architecture": ARCHITECTURE,
            "config": InclinationNet(stages=stages, dropout=cfg.dropout, hidden=hidden).config,
            "members": [{"file": r["file"], "sha256": r["sha256"]} for r in records],
        }
        (out / "ensemble.json").write_text(json.dumps(manifest, indent=1))
    wall = time.time() - t0
    # ensemble validation metrics
    from ml.inference import Ensemble

    ens = Ensemble.load(out, device=str(device))
    ev = ens.predict_arrays(val[0].astype(np.float32), tta=False)
    acc = val[2] == 0
    d = ev["median"][acc] - val[1][acc]
    ens_val = {
        "rms": float(np.sqrt(np.mean(d * d))),
        "mae": float(np.mean(np.abs(d))),
        "bias": float(np.mean(d)),
        "reject_accuracy": float(np.mean((ev["reject_likelihood"] > 0.5) == (val[2] == 1))),
    }
    card = {
        "name": manifest["name"],
        "initialised_from": _init_record(cfg.init_from) if cfg.init_from else None,
        "architecture": ARCHITECTURE,
        "net_config": manifest["config"],
        "parameters_per_member": int(sum(p.numel() for p in ens.models[0].parameters())),
        "training_data": {
            "kind": "synthetic (ml.synth.render_one), rendered at 128x128",
            "pool_images": cfg.images * len(seeds),
            "pool_seed": cfg.seed,
            "pool_seeds": seeds,
            "bag_fraction": BAG_FRACTION,
            "validation_seed": cfg.seed + VAL_SEED_OFFSET,
            "validation_images": cfg.val_images,
            "synth_config": asdict(SynthConfig(wide=cfg.wide)),
        },
        "train_config": asdict(cfg),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "device": str(device),
        "threads": cfg.threads,
        "host": {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine()},
        "render_seconds": round(t_render, 1),
        "render_workers": cfg.render_workers,
        "pool_from_cache": pool_cached,
        "wall_seconds": round(wall, 1),
        "members": records,
        "ensemble_val": ens_val,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=1))
    (out / "MODEL_CARD.md").write_text(model_card_markdown(card))
    log(f"ensemble validation: {ens_val}; wall {wall:.0f} s")
    return card


def _init_record(directory: str) -> dict:
    """What an ensemble continued from: its members' sha256, command and metrics."""
    d = Path(directory)
    manifest = json.loads((d / "ensemble.json").read_text())
    prev = json.loads((d / "model_card.json").read_text()) if (d / "model_card.json").exists() else {}
    return {
        "directory": str(directory),
        "members": manifest["members"],
        "config": manifest.get("config"),
        "command": prev.get("command"),
        "device": prev.get("device"),
        "wall_seconds": prev.get("wall_seconds"),
        "training_data": prev.get("training_data"),
        "ensemble_val": prev.get("ensemble_val"),
        "initialised_from": prev.get("initialised_from"),
    }


def _init_lines(init: dict | None) -> list[str]:
    if not init:
        return []
    td = init.get("training_data") or {}
    ev = init.get("ensemble_val") or {}
    widened = _widening_text((init.get("initialised_from") or {}).get("config"), init.get("config"))
    lines = [
        "## Continued from an earlier ensemble",
        f"Each member k started from member k of `{init['directory']}` "
        f"(sha256 {', '.join(m['sha256'][:12] for m in init['members'])}), trained by",
        "```",
        str(init.get("command")),
        "```",
        f"on {init.get('device')} in {init.get('wall_seconds')} s (pool {td.get('pool_images')} images from "
        f"{_seeds_text(td.get('pool_seeds') or [td.get('pool_seed')])}; ensemble validation RMS {ev.get('rms', float('nan')):.2f} deg)."
        + (f" That run first widened its members, function-preserving, from {widened}." if widened else ""),
        "",
    ]
    return _init_lines(init.get("initialised_from")) + lines if init.get("initialised_from") else lines


def _seeds_text(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))} (equal shares)"


def _widening_text(old: dict | None, new: dict | None) -> str | None:
    """'stages .. / hidden .. to .. / ..' when a run's net config widened its --init-from one's, else None."""
    if not old or not new or (old["stages"], old["hidden"]) == (new["stages"], new["hidden"]):
        return None
    return f"stages {old['stages']} / hidden {old['hidden']} to {new['stages']} / {new['hidden']}"


def _widened_lines(card: dict) -> list[str]:
    """The model card's note when the members were widened from the --init-from ensemble."""
    widened = _widening_text((card.get("initialised_from") or {}).get("config"), card["net_config"])
    if not widened:
        return []
    return [
        "## Widened before training",
        f"Each member was widened from that ensemble's {widened}: copied channels and hidden units, the copies' outgoing weights "
        "shared among them, so the wider net started as the same function (Net2WiderNet, Chen, Goodfellow & "
        f"Shlens 2016, ICLR), with noise of {WIDEN_NOISE:g} of each layer's weight std on the copies.",
        "",
    ]


def model_card_markdown(card: dict) -> str:
    """Human-readable model card."""
    td = card["training_data"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Architecture: {card['architecture']}; {card['parameters_per_member']} parameters per member; "
        f"net config `{json.dumps(card['net_config'])}`.",
        "",
        "## Training data",
        f"Synthetic disk galaxies from `ml.synth` (thick exponential disks, q0 ~ U(0.1, 0.3), Sérsic bulges, "
        f"arms/clumps, dust, PSF, noise, stars, neighbours; grey, inverted grey and gri colour; "
        f"face-on and junk examples labelled reject). Pool: {td['pool_images']} images from "
        f"{_seeds_text(td.get('pool_seeds') or [td['pool_seed']])}; each member trains on its own {int(td['bag_fraction'] * 100)} % subset. "
        f"Validation: {td['validation_images']} images from seed {td['validation_seed']}."
        + (
            f" A share {card['train_config']['wide']:g} of pool and validation images comes from the widened renderer "
            "(ml.synth.wide: 3-D disks with sech^2/sech/Gaussian vertical profiles and Matérn radial "
            "profiles, thick/outer disks, Sérsic disks of index 0.5-1.5, boxy/discy bulges of index 0.5-6, bars, "
            "knots, Gaussian/Moffat/Kolmogorov/double-Gaussian PSFs of 0.6-3.5 px, galaxy scales 0.6-1.55, "
            "centring errors, correlated noise, gains, sky gradients, linear/sqrt/gamma stretches)."
            if card["train_config"].get("wide")
            else ""
        )
        + (
            f" Member 0 trains {card['train_config']['epochs']} epochs from scratch; members 1.. start from member 0's "
            f"weights and train {card['train_config']['finetune_epochs']} epoch(s) on their own subset "
            f"(max lr x {card['train_config']['finetune_lr_factor']})."
            if card["train_config"].get("warm_start")
            else ""
        ),
        "",
        *_init_lines(card.get("initialised_from")),
        *_widened_lines(card),
        "## Exact command",
        "```",
        card["command"],
        "```",
        f"Device {card['device']}, {card['threads']} thread(s); render {card['render_seconds']} s"
        + (
            " (pool loaded from the render cache of an earlier run with the same seed and size)"
            if card.get("pool_from_cache")
            else f" ({card.get('render_workers', 1)} process(es))"
        )
        + "; "
        f"wall time {card['wall_seconds']} s; created {card['created']}.",
        "",
        "## Metrics (validation seed, accepted images; degrees)",
        "| model | RMS | MAE | bias | reject accuracy |",
        "|---|---|---|---|---|",
    ]
    for r in card["members"]:
        v = r["val"] or {}
        lines.append(
            f"| member {r['member']} | {v.get('rms', float('nan')):.2f} | {v.get('mae', float('nan')):.2f} | "
            f"{v.get('bias', float('nan')):+.2f} | {v.get('reject_accuracy', float('nan')):.3f} |"
        )
    e = card["ensemble_val"]
    lines.append(f"| ensemble median | {e['rms']:.2f} | {e['mae']:.2f} | {e['bias']:+.2f} | {e['reject_accuracy']:.3f} |")
    lines += ["", "## Per-epoch history", ""]
    for r in card["members"]:
        for h in r["history"]:
            lines.append(
                f"- member {r['member']} epoch {h['epoch']}: train loss {h['train']['loss']:.3f}, "
                f"val RMS {h['val']['rms']:.2f}, val bias {h['val']['bias']:+.2f}, "
                f"reject acc {h['val']['reject_accuracy']:.3f}, {h['seconds']} s"
            )
    lines += ["", "## Weights", ""]
    for r in card["members"]:
        lines.append(f"- `{r['file']}` sha256 `{r['sha256']}`")
    lines += [
        "",
        "Evaluation on a fresh seed and on real SDSS cutouts: `python manage.py evaluate_inclination`.",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train the bagged inclination CNN ensemble on synthetic images.")
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--images", type=int, default=24000, help="size of the synthetic training pool")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="ml/weights")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-images", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", default="var/ml_cache")
    p.add_argument("--render-workers", type=int, default=1, help="processes that render the synthetic pool")
    p.add_argument("--jobs", type=int, default=1, help="members trained at once, one process each (sharing --threads)")
    p.add_argument("--init-from", default=None, help="continue training: member k starts from DIR/member{k}.pt")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--warm-start", action="store_true", help="members 1..K-1 start from member 0 and fine-tune on their own bag")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-lr-factor", type=float, default=0.3, help="max lr of warm-started members relative to --lr")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout before and after the hidden layer")
    p.add_argument("--loss-scale-deg", type=float, default=5.0, help="regression loss = squared error / scale^2")
    p.add_argument("--wide", type=float, default=0.0, help="share of images from the widened renderer (ml.synth.wide)")
    add_width_options(p)
    return p


def add_width_options(p) -> None:
    """--stages and --hidden (shared by ``python -m ml.train`` and the ``train_inclination`` command)."""
    p.add_argument(
        "--stages",
        type=parse_stages,
        default=None,
        help="conv channels per stage, e.g. 8,16,32,64+64,128 (default: --init-from's, else the network's); "
        "wider than --init-from's widens its members first (function-preserving)",
    )
    p.add_argument("--hidden", type=int, default=None, help="width of the hidden layer (default: --init-from's, else the network's)")
    p.add_argument(
        "--extra-seeds",
        type=parse_seeds,
        default=(),
        help="further pools of --images images each, e.g. 9,11 (rendered or from the cache), appended to --seed's pool",
    )


#: TrainConfig fields set by the options of the same name (``python -m ml.train`` and the
#: ``train_inclination`` command share them).
_OPTION_FIELDS = (
    "members",
    "images",
    "epochs",
    "seed",
    "out",
    "batch_size",
    "lr",
    "val_images",
    "threads",
    "render_workers",
    "jobs",
    "init_from",
    "device",
    "warm_start",
    "finetune_epochs",
    "finetune_lr_factor",
    "dropout",
    "loss_scale_deg",
    "wide",
    "stages",
    "hidden",
    "extra_seeds",
)


def config_from_options(o: dict, progress: bool = True) -> TrainConfig:
    """TrainConfig from parsed options (a dict of option name -> value; '' cache dir = none)."""
    return TrainConfig(**{k: o[k] for k in _OPTION_FIELDS}, cache_dir=o["cache_dir"] or None, progress=progress)


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    cmd = "python -m ml.train " + " ".join(shlex.quote(s) for s in (argv if argv is not None else sys.argv[1:]))
    train_ensemble(config_from_options(vars(a), progress=not a.no_progress), command=cmd, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
