"""Inputs of the latent model: preprocessing and the labelled synthetic pool (numpy; no Django).

Grey models (``channels = 1``) take exactly the inclination CNN's input
(:func:`ml.preprocess.preprocess`, [1, 128, 128]) averaged over 2x2 pixel blocks to
[1, 64, 64]: one preprocessing for the CNN, the latent model, training and inference.
Colour models (``channels = 3``) apply the same steps to each of the g, r, i planes with one
sky-subtracted scale for all three (so colours survive); a grey image given to a colour model is
repeated in the three planes.

Each synthetic image carries a retrieval class: 0 disk (an accepted inclined disk), 1 face-on
(inc < 45 deg), 2 reject (star, blank, merger, elliptical, artefact), and its ``ml.synth`` kind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ml.preprocess import NET_SIZE, _resize, display_grey_order_many, is_inverted, normalise_display, to_grey01
from ml.synth import KINDS, SynthConfig, render_one

#: Side of the latent model's input (pixels): the CNN's 128 px input averaged over 2x2 blocks.
LATENT_SIZE = 64
#: Images preprocessed together (their temporaries, about 4 MB, stay in cache).
PREP_CHUNK = 64
#: Retrieval classes (targets of the issue: disk / face-on / reject).
CLASSES = ("disk", "faceon", "reject")


def class_of_kind(kind: str) -> int:
    """Retrieval class index of an ``ml.synth`` kind."""
    return 0 if kind == "disk" else 1 if kind == "faceon" else 2


def _pool2(a: np.ndarray) -> np.ndarray:
    """[..., 2H, 2W] -> [..., H, W] mean over 2x2 blocks."""
    return ((a[..., 0::2, 0::2] + a[..., 0::2, 1::2]) + (a[..., 1::2, 0::2] + a[..., 1::2, 1::2])) * np.asarray(0.25, a.dtype)


def _colour_planes(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] colour image -> float32 [3, NET_SIZE, NET_SIZE] planes, bright on a zero sky,
    all three divided by the 99.5th percentile of their mean (the grey preprocessing's scale)."""
    a = np.asarray(image)
    if a.shape[-1] == 4:
        a = a[..., :3]
    planes = np.stack([to_grey01(a[..., k]) for k in range(3)])
    if is_inverted(planes.mean(0)):
        planes = 1.0 - planes
    _, h, w = planes.shape
    s = min(h, w)
    planes = planes[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    if s != NET_SIZE:
        planes = np.stack([_resize(p, NET_SIZE) for p in planes])
    planes = planes - np.median(planes, axis=(1, 2), keepdims=True)
    peak = float(np.percentile(planes.mean(0), 99.5))
    return np.clip(planes / max(peak, 1e-3), -1.0, 4.0).astype(np.float32)


def preprocess_latent(image: np.ndarray, channels: int = 1) -> np.ndarray:
    """Any image array (as ml.preprocess.load_image_file returns it) -> float32 [channels, 64, 64]."""
    return latent_inputs([image], channels)[0][0]


def _grey_inputs_into(images: list[np.ndarray], x: np.ndarray, grey: np.ndarray | None) -> None:
    """Grey latent inputs of images into x [N, 1, 64, 64] and, unless None, their display values
    into grey [N, 128, 128], PREP_CHUNK images at a time (the temporaries stay in cache)."""
    for c0 in range(0, len(images), PREP_CHUNK):
        g, order = display_grey_order_many(images[c0 : c0 + PREP_CHUNK], NET_SIZE)
        x[c0 : c0 + len(g), 0] = _pool2(normalise_display(g, order))
        if grey is not None:
            grey[c0 : c0 + len(g)] = g


def latent_inputs(
    images: list[np.ndarray], channels: int = 1, workers: int = 1, display: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """A list of images -> (float32 [N, channels, 64, 64] inputs, float32 [N, 128, 128] display
    values of the grey path (ml.preprocess.display_grey: un-inverted, before the sky subtraction
    and the percentile scale), None for colour models or without ``display``). Grey:
    ml.preprocess.preprocess averaged over 2x2 blocks (up to float rounding), ``workers`` threads
    sharing the list."""
    n = len(images)
    if channels == 3:
        x = np.empty((n, 3, LATENT_SIZE, LATENT_SIZE), dtype=np.float32)
        for k, im in enumerate(images):
            a = np.asarray(im)
            if a.ndim == 2 or a.shape[-1] == 1:
                _grey_inputs_into([a], x[k : k + 1, :1], None)
                x[k, 1:] = x[k, 0]
            else:
                x[k] = _pool2(_colour_planes(a))
        return x, None
    if channels != 1:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    x = np.empty((n, 1, LATENT_SIZE, LATENT_SIZE), dtype=np.float32)
    grey = np.empty((n, NET_SIZE, NET_SIZE), dtype=np.float32) if display else None
    workers = max(1, min(int(workers), n // PREP_CHUNK))
    if workers == 1:
        _grey_inputs_into(images, x, grey)
        return x, grey
    from concurrent.futures import ThreadPoolExecutor

    cuts = np.linspace(0, n, workers + 1).astype(int)

    def run(j: int) -> None:
        sl = slice(cuts[j], cuts[j + 1])
        _grey_inputs_into(images[sl], x[sl], None if grey is None else grey[sl])

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, range(workers)))
    return x, grey


def preprocess_many(images: list[np.ndarray], channels: int = 1, workers: int = 1) -> np.ndarray:
    """A list of images -> float32 [N, channels, 64, 64] (latent_inputs without the display values)."""
    return latent_inputs(images, channels, workers, display=False)[0]


def synth_config(channels: int) -> SynthConfig:
    """The synthetic mix of a model: ml.synth's default for grey models; all gri for colour."""
    return SynthConfig() if channels == 1 else SynthConfig(p_colour=1.0)


def render_pool(
    seed: int, n: int, channels: int = 1, config: SynthConfig | None = None, start: int = 0, progress: bool = False
) -> dict[str, np.ndarray]:
    """Images start..start+n-1 of the ml.synth set ``seed`` as latent inputs with labels.

    Returns x float16 [N, C, 64, 64], inc float32 [N] (deg; NaN for junk), cls int8 [N]
    (CLASSES), kind int8 [N] (index into ml.synth.KINDS). Deterministic from (seed, index).
    """
    cfg = config or synth_config(channels)
    x = np.empty((n, channels, LATENT_SIZE, LATENT_SIZE), dtype=np.float16)
    inc = np.full(n, np.nan, dtype=np.float32)
    cls = np.zeros(n, dtype=np.int8)
    kind = np.zeros(n, dtype=np.int8)
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"render seed={seed}", unit="img", mininterval=5)
    for k in it:
        im, lab = render_one(seed, start + k, cfg)
        x[k] = preprocess_latent(im, channels)
        inc[k] = lab["inc"]
        cls[k] = class_of_kind(lab["kind"])
        kind[k] = KINDS.index(lab["kind"])
    return dict(x=x, inc=inc, cls=cls, kind=kind)


def cached_pool(seed: int, n: int, channels: int = 1, cache_dir: str | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """render_pool with an npz cache keyed by seed, n and channels; a cached larger set of the
    same seed is cut, a smaller one is reused as the head of the set (image k depends only on
    (seed, k))."""
    if not cache_dir:
        return render_pool(seed, n, channels, progress=progress)
    d = Path(cache_dir)
    path = d / f"latent_c{channels}_seed{seed}_n{n}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    head = None
    for p in sorted(d.glob(f"latent_c{channels}_seed{seed}_n*.npz")) if d.is_dir() else []:
        m = int(p.stem.split("_n")[-1])
        if m > n:  # a larger set of the same seed starts with this one
            with np.load(p) as z:
                return {k: z[k][:n] for k in z.files}
        if m < n and (head is None or m > head[1]):
            head = (p, m)
    start = head[1] if head else 0
    pool = render_pool(seed, n - start, channels, start=start, progress=progress)
    if head:
        with np.load(head[0]) as z:
            pool = {k: np.concatenate([z[k], pool[k]]) for k in pool}
    d.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **pool)
    os.replace(tmp, path)
    return pool
