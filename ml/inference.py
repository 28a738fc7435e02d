"""Inference with the bagged ensemble (no Django; the Django side calls these functions).

Loading reads ``ensemble.json`` in a weights directory and refuses any member file whose sha256
differs from the manifest (or from the sha256 the caller expects, e.g. a ModelVersion row).
Prediction uses the same :func:`ml.preprocess.preprocess` as training, test-time flips (the
inclination is invariant under horizontal and vertical flips), optionally Monte-Carlo dropout,
and summarises over members x passes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ml.nets import InclinationNet, fuse_for_inference
from ml.preprocess import load_image_file, preprocess
from ml.synth import inclination_from_axis_ratio
from ml.weights_files import DEFAULT_WEIGHTS_DIR, WeightsChecksumError, default_weights_dir, sha256_file  # noqa: F401 (re-exported)

#: Default intrinsic axis ratio of the axis-ratio baseline (DESIGN: q0 = 0.3, configurable).
DEFAULT_Q0 = 0.3


def _sha256(path: Path) -> str:
    return sha256_file(path)


# the four flips: identity, horizontal, vertical, both (= rotation by 180 deg)
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


@dataclass
class Ensemble:
    """Members of one model version, ready for prediction."""

    models: list[InclinationNet]
    names: list[str]
    sha256: list[str]
    directory: Path
    device: torch.device
    manifest: dict
    #: what runs each member's passes: the members themselves, or their torch.compile'd forms
    runners: list | None = None

    @classmethod
    def load(
        cls,
        directory: str | Path | None = None,
        device: str | None = None,
        expected_sha256: dict[str, str] | None = None,
        compile: bool = False,
    ) -> Ensemble:
        """Load every member listed in directory/ensemble.json, checking each file's sha256.

        expected_sha256 maps file name -> sha256 (e.g. from the database); it overrides the manifest.
        compile: run the members through torch.compile (on CPU it fuses the ReLUs and pooling into
        the convolutions: more images/s, after a compilation per member and batch shape at first
        use; worth it for long runs, not for a few files; figures in bench/README.md).
        Raises WeightsChecksumError on any mismatch and FileNotFoundError when files are missing.
        """
        directory = Path(directory) if directory is not None else default_weights_dir()
        manifest = json.loads((directory / "ensemble.json").read_text())
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        models, names, shas = [], [], []
        for m in manifest["members"]:
            path = directory / m["file"]
            want = (expected_sha256 or {}).get(m["file"], m["sha256"])
            got = _sha256(path)
            if got != want:
                raise WeightsChecksumError(f"refusing to load {path}: sha256 {got} does not match the expected {want}")
            state = torch.load(path, map_location=dev, weights_only=True)
            net = InclinationNet(**state["config"])
            net.load_state_dict(state["state_dict"])
            net = fuse_for_inference(net.to(dev)).to(memory_format=torch.channels_last)
            models.append(net)
            names.append(Path(m["file"]).stem)
            shas.append(got)
        if not models:
            raise FileNotFoundError(f"no members in {directory / 'ensemble.json'}")
        runners = [torch.compile(m) for m in models] if compile else None
        return cls(models, names, shas, directory, dev, manifest, runners)

    @torch.no_grad()
    def predict_arrays(
        self,
        x: np.ndarray | torch.Tensor,
        tta: bool = True,
        mc_dropout: int = 0,
        batch_size: int = 256,
    ) -> dict[str, np.ndarray]:
        """Predict for preprocessed inputs x [B, 1, 128, 128].

        Returns per_member [B, M] (member values averaged over passes), passes [B, M * P] (every
        pass), median/mean/std [B] over all passes, reject_likelihood [B] (mean sigmoid),
        sigma_model [B] (mean predicted sigma, deg).
        """
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
        flips = TTA_FLIPS if tta else ((),)
        n_mc = max(int(mc_dropout), 0)
        out_inc, out_rej, out_sig = [], [], []
        for b0 in range(0, len(xt), batch_size):
            xb = xt[b0 : b0 + batch_size].to(self.device)
            incs, rejs, sigs = [], [], []
            for k, net in enumerate(self.models):
                # MC dropout switches dropout on: the eager member then (a compiled one would recompile)
                run = self.runners[k] if self.runners and not n_mc else net
                net.eval()
                if n_mc:
                    for mod in net.modules():
                        if isinstance(mod, torch.nn.Dropout):
                            mod.train()
                m_inc, m_rej, m_sig = [], [], []
                for fl in flips:
                    xf = xb.flip(fl) if fl else xb
                    xf = xf.contiguous(memory_format=torch.channels_last)
                    for _ in range(max(n_mc, 1)):
                        o = run(xf)
                        m_inc.append(o["inc"])
                        m_rej.append(torch.sigmoid(o["reject_logit"]))
                        m_sig.append(torch.exp(0.5 * o["logvar"]))
                net.eval()
                incs.append(torch.stack(m_inc, 1))  # [b, P]
                rejs.append(torch.stack(m_rej, 1))
                sigs.append(torch.stack(m_sig, 1))
            out_inc.append(torch.stack(incs, 1).cpu())  # [b, M, P]
            out_rej.append(torch.stack(rejs, 1).cpu())
            out_sig.append(torch.stack(sigs, 1).cpu())
        inc = torch.cat(out_inc).numpy().astype(np.float64)
        rej = torch.cat(out_rej).numpy().astype(np.float64)
        sig = torch.cat(out_sig).numpy().astype(np.float64)
        flat = inc.reshape(len(inc), -1)
        return {
            "per_member": inc.mean(2),
            "passes": flat,
            "median": np.median(flat, 1),
            "mean": flat.mean(1),
            "std": flat.std(1),
            "reject_likelihood": rej.reshape(len(rej), -1).mean(1),
            "sigma_model": sig.reshape(len(sig), -1).mean(1),
        }

    def predict_images(
        self, images: list[np.ndarray], rotate: bool = False, tta: bool = True, mc_dropout: int = 0
    ) -> dict[str, np.ndarray]:
        """Predict for raw image arrays (any size, grey or colour, inverted or not)."""
        x = np.stack([preprocess(im, rotate=rotate) for im in images])
        return self.predict_arrays(x, tta=tta, mc_dropout=mc_dropout)


_CACHE: dict[tuple, Ensemble] = {}


def get_ensemble(directory: str | Path | None = None, device: str | None = None) -> Ensemble:
    """Process-wide cached Ensemble.load (each distinct directory loaded and checked once); the
    default directory is :func:`ml.weights_files.default_weights_dir`."""
    directory = directory if directory is not None else default_weights_dir()
    key = (str(Path(directory).resolve()), device)
    if key not in _CACHE:
        _CACHE[key] = Ensemble.load(directory, device)
    return _CACHE[key]


def axis_ratio_from_moments(image: np.ndarray) -> float:
    """Apparent axis ratio b/a of the central galaxy from second moments of its isophotal area.

    image: raw array (any size, grey or colour). The preprocessed input is smoothed, the pixels
    above max(3 sigma of the sky, 10 % of the peak) that connect to the centre form the galaxy's
    footprint, and the moments of that footprint (uniform weights, like an isophote) give
    q = sqrt(l_min / l_max).
    """
    from scipy import ndimage

    v = preprocess(image)[0].astype(np.float64)
    s = ndimage.gaussian_filter(v, 1.5)
    sky = s[np.abs(s) <= np.percentile(np.abs(s), 60)]
    noise = 1.4826 * float(np.median(np.abs(sky - np.median(sky))))
    # 3 sigma of the smoothed sky, but never below 10 % of the (normalised) peak: lower isophotes
    # merge with noise, stars and neighbours; an opening cuts thin bridges to them
    mask = s > float(np.median(sky)) + max(3.0 * noise, 0.1)
    mask = ndimage.binary_opening(mask)
    lab, _ = ndimage.label(mask)
    c = v.shape[0] // 2
    centre = lab[c - 3 : c + 4, c - 3 : c + 4]
    ids = centre[centre > 0]
    if ids.size == 0:
        return float("nan")
    gid = np.bincount(ids).argmax()
    yy, xx = np.nonzero(lab == gid)
    if len(xx) < 10:
        return float("nan")
    cov = np.cov(np.vstack([xx, yy]).astype(np.float64))
    ev = np.linalg.eigvalsh(cov)
    return float(np.sqrt(max(ev[0], 1e-9) / max(ev[1], 1e-9)))


def axis_ratio_inclination(q: float | np.ndarray, q0: float = DEFAULT_Q0) -> np.ndarray:
    """Baseline inclination (deg) from an apparent axis ratio (Hubble 1926)."""
    return inclination_from_axis_ratio(q, q0)


def predict_files(
    paths: list[str], ensemble: Ensemble | None = None, rotate: bool = False, tta: bool = True, mc_dropout: int = 0
) -> list[dict]:
    """Rows (file, inc_median, inc_mean, inc_std, reject_likelihood, members...) for image files."""
    ens = ensemble or get_ensemble()
    images = [load_image_file(p) for p in paths]
    res = ens.predict_images(images, rotate=rotate, tta=tta, mc_dropout=mc_dropout)
    rows = []
    for k, p in enumerate(paths):
        rows.append(
            {
                "file": str(p),
                "inc_median": round(float(res["median"][k]), 2),
                "inc_mean": round(float(res["mean"][k]), 2),
                "inc_std": round(float(res["std"][k]), 2),
                "reject_likelihood": round(float(res["reject_likelihood"][k]), 4),
                "members": [round(float(v), 2) for v in res["per_member"][k]],
            }
        )
    return rows
