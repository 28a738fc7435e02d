"""Images/s of the inclination ensemble (prints figures; no assertions).

    .venv/bin/python bench/cnn_bench.py [--threads 2] [--weights ml/weights] [--seconds 3]

Per network pass (one member, no test-time flips) at batch 1, 32 and 256, and the whole ensemble
with its 4 test-time flips (members x 4 passes per image), on CPU and on CUDA when present.
Inputs are already preprocessed tensors; the preprocessing cost is printed separately.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.inference import TTA_FLIPS, Ensemble, default_weights_dir  # noqa: E402
from ml.preprocess import preprocess  # noqa: E402
from ml.synth import render_one  # noqa: E402


def rate(fn, n_per_call: int, seconds: float) -> float:
    fn()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        fn()
        n += n_per_call
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=str(default_weights_dir()))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd members (compiled before timing)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {a.threads} CPU thread(s), devices: {devices}")
    t0 = time.perf_counter()
    raw = [render_one(99, k)[0] for k in range(64)]
    t1 = time.perf_counter()
    x = np.stack([preprocess(im) for im in raw])
    t2 = time.perf_counter()
    print(f"render {64 / (t1 - t0):.0f} img/s, preprocess {64 / (t2 - t1):.0f} img/s (1 thread, numpy)")
    variants = [(dev, False) for dev in devices] + ([(dev, True) for dev in devices] if a.compile else [])
    for dev, compiled in variants:
        ens = Ensemble.load(a.weights, device=dev, compile=compiled)
        net = ens.runners[0] if compiled else ens.models[0]
        label = f"{dev}, torch.compile" if compiled else f"{dev}, eager"
        print(f"\n[{label}] {len(ens.models)} members, {sum(p.numel() for p in ens.models[0].parameters())} parameters each")
        for bs in (1, 32, 256):
            xb = torch.from_numpy(np.resize(x, (bs, 1, 128, 128)).astype(np.float32)).to(dev)
            xb = xb.contiguous(memory_format=torch.channels_last)

            def one_pass(xb=xb, net=net):
                with torch.inference_mode():
                    net(xb)

            per_pass = rate(one_pass, bs, a.seconds)

            def ensemble_tta(xb=xb, ens=ens, compiled=compiled):
                with torch.inference_mode():
                    for m in ens.runners if compiled else ens.models:
                        for fl in TTA_FLIPS:
                            m((xb.flip(fl) if fl else xb).contiguous(memory_format=torch.channels_last))

            ens_rate = rate(ensemble_tta, bs, a.seconds)
            passes = len(ens.models) * len(TTA_FLIPS)
            print(
                f"  batch {bs:>3}: one pass {per_pass:8.0f} img/s | ensemble x {len(TTA_FLIPS)} flips "
                f"({passes} passes/img) {ens_rate:8.1f} img/s"
            )


if __name__ == "__main__":
    main()
