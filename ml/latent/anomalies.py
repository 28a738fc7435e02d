"""Deterministic injection of anomalies into display cutouts (pure numpy; no Django).

The test of the outlier score: normal disks rendered by ``ml.synth`` (kinds disk and face-on)
with a small fraction turned into anomalies of the kinds surveys meet: a bright star in place of
or on the galaxy, blends and mergers (a second galaxy overlapping), blank frames, saturated
frames (a large clipped region with bleed columns), satellite trails and cosmic-ray hits.
Image ``k`` of a test set depends only on ``(seed, k)``.

Injections work on the display values (uint8 grey, possibly inverted, or gri colour) as a
cutout service would deliver them: the image is un-inverted, light is added in display units,
values are clipped to the 8-bit range and the inversion is restored.
"""

from __future__ import annotations

import numpy as np

from ml.synth import SynthConfig, render_one

ANOMALY_KINDS = ("star", "blend", "blank", "saturated", "trail", "cosmic_ray")
#: Normal images of the test: disks and face-on disks only.
NORMAL_CONFIG = dict(
    frac_disk=0.85, frac_faceon=0.15, frac_star=0.0, frac_blank=0.0, frac_merger=0.0, frac_elliptical=0.0, frac_artefact=0.0
)


def normal_config(colour: bool | None = None) -> SynthConfig:
    """ml.synth configuration of the normal images (colour None keeps the default mix)."""
    extra = {} if colour is None else {"p_colour": 1.0 if colour else 0.0}
    return SynthConfig(**NORMAL_CONFIG, **extra)


def _to_light(image: np.ndarray) -> tuple[np.ndarray, bool]:
    v = np.asarray(image, dtype=np.float64) / 255.0
    inverted = v.ndim == 2 and float(np.median(v)) > 0.5
    return (1.0 - v if inverted else v), inverted


def _from_light(v: np.ndarray, inverted: bool) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.round((1.0 - v if inverted else v) * 255.0).astype(np.uint8)


def _add(v: np.ndarray, light: np.ndarray) -> np.ndarray:
    return v + (light[..., None] if v.ndim == 3 else light)


def _grid(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return x - (w - 1) / 2, y - (h - 1) / 2


def inject(image: np.ndarray, kind: str, rng: np.random.Generator, other: np.ndarray | None = None) -> np.ndarray:
    """One anomaly of ``kind`` (ANOMALY_KINDS) in a uint8 display image; ``other`` is a second
    galaxy image of the same shape for blends. Returns a new uint8 array of the same shape."""
    v, inv = _to_light(image)
    x, y = _grid(v.shape)
    sky = float(np.median(v))
    if kind == "star":
        # a bright, saturated star with diffraction spikes, on or near the galaxy's centre
        x0, y0 = rng.normal(0, 6, 2)
        r = np.hypot(x - x0, y - y0)
        core = rng.uniform(2.0, 5.0)
        star = 1.5 * np.exp(-0.5 * (r / core) ** 2) + 0.6 / (1 + (r / (2 * core)) ** 2.5)
        ang = rng.uniform(0, np.pi / 2)
        for a in (ang, ang + np.pi / 2):
            u = (x - x0) * np.cos(a) + (y - y0) * np.sin(a)
            t = -(x - x0) * np.sin(a) + (y - y0) * np.cos(a)
            star += 0.5 * np.exp(-0.5 * (t / 0.8) ** 2) * np.exp(-np.abs(u) / rng.uniform(10, 25))
        v = _add(v, star)
    elif kind == "blend":
        if other is None:
            raise ValueError("a blend needs a second galaxy image")
        o, _ = _to_light(other)
        sh = (rng.uniform(0.12, 0.3) * np.array(v.shape[:2]) * rng.choice([-1, 1], 2)).astype(int)
        o = np.roll(o, tuple(sh), (0, 1))
        if rng.random() < 0.5:
            o = np.rot90(o, 1, (0, 1))
        v = np.maximum(v, sky + rng.uniform(0.7, 1.2) * (o - np.median(o)))
    elif kind == "blank":
        # sky only: the median level and the noise of the frame's outskirts, no source
        edge = np.concatenate([v[:8].reshape(-1), v[-8:].reshape(-1)])
        sd = max(float(np.std(edge)), 2.0 / 255)
        v = np.full(v.shape, sky) + rng.normal(0, sd, v.shape)
    elif kind == "saturated":
        # a saturated region (bright star or overexposure) with bleed columns through the frame
        x0, y0 = rng.uniform(-0.3, 0.3, 2) * v.shape[0]
        r = np.hypot(x - x0, y - y0)
        blob = (r < rng.uniform(0.12, 0.35) * v.shape[0]).astype(float)
        cols = np.abs(x - x0) < rng.uniform(1.0, 3.0)
        blob = np.maximum(blob, cols.astype(float) * (rng.random() < 0.8))
        v = np.where(_add(np.zeros_like(v), blob) > 0, 1.0, v)
    elif kind == "trail":
        # a satellite trail: a straight bright line across the whole frame
        a = rng.uniform(0, np.pi)
        d = rng.uniform(-0.3, 0.3) * v.shape[0]
        t = x * np.sin(a) - y * np.cos(a) - d
        v = _add(v, rng.uniform(0.5, 1.0) * np.exp(-0.5 * (t / rng.uniform(0.7, 1.5)) ** 2))
    elif kind == "cosmic_ray":
        # sharp hits: single pixels and short straight tracks at full brightness
        light = np.zeros(v.shape[:2])
        h, w = light.shape
        for _ in range(int(rng.integers(6, 16))):
            cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
            length = int(rng.integers(1, 10))
            a = rng.uniform(0, 2 * np.pi)
            for s in range(length):
                px, py = int(cx + s * np.cos(a)), int(cy + s * np.sin(a))
                if 0 <= px < w and 0 <= py < h:
                    light[py, px] = 1.0
        v = _add(v, light)
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}; expected one of {', '.join(ANOMALY_KINDS)}")
    return _from_light(v, inv)


def anomaly_set(
    seed: int, n: int, prevalence: float = 0.02, colour: bool | None = None, kinds: tuple[str, ...] = ANOMALY_KINDS
) -> tuple[list[np.ndarray], list[str | None]]:
    """n display images of the set ``seed``: normal disks, of which round(prevalence * n) (at least
    one per kind) carry an anomaly, kinds in turn. Returns images and, per image, the anomaly
    kind or None. Deterministic from (seed, n, prevalence, kinds)."""
    cfg = normal_config(colour)
    n_anom = max(len(kinds), int(round(prevalence * n))) if kinds else 0
    order = np.random.default_rng([seed, 99]).permutation(n)
    which: list[str | None] = [None] * n
    for j, k in enumerate(order[:n_anom]):
        which[int(k)] = kinds[j % len(kinds)]
    images = []
    for k in range(n):
        im, _ = render_one(seed, k, cfg)
        if which[k] is not None:
            rng = np.random.default_rng([seed, k, 7])
            other = render_one(seed + 1, k, cfg)[0] if which[k] == "blend" else None
            if other is not None and other.shape != im.shape:
                other = np.repeat(other[..., None], 3, -1) if other.ndim == 2 else other.mean(-1).astype(np.uint8)
            im = inject(im, which[k], rng, other)
        images.append(im)
    return images, which
