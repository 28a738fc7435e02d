"""Fitting on several CPU cores: worker processes with one torch thread each.

Intra-op threads scale poorly on batches of small images (many short kernels, shared caches):
two intra-op threads come far short of twice one thread (figures in bench/README.md). Independent
processes, each fitting its own batches on one thread, avoid that, the same way the site's
django-q2 cluster runs one fit task per worker process.

    >>> with CpuPool(2) as pool:              # start-up (imports torch twice) outside any timing
    ...     out = pool.fit(images, sigma, psf)  # a BatchFit, as fitting.engine.fit returns

Workers are spawned (not forked: a fork after torch has started its thread pools can deadlock).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from torch import Tensor

from .fit import BatchFit, fit

#: Chunk sizes a worker fits at once (one thread: 32-64 galaxies of 64 x 64 were fastest).
MIN_CHUNK, MAX_CHUNK = 8, 64


def _init_worker(warm: dict | None) -> None:
    torch.set_num_threads(1)
    if warm:  # compile (or load the compiled kernels) and build the renderer before any timing
        h, w = warm["shape"]
        g = torch.Generator().manual_seed(0)
        for k in (1, 3):
            img = torch.rand(k, h, w, generator=g) + 10.0 * torch.exp(-0.1 * ((torch.arange(w) - w / 2) ** 2)[None, None, :])
            fit(img, torch.ones_like(img), warm.get("psf"), device="cpu", compile=warm.get("compile", False), max_iter=2)


def _ready(_: int) -> int:
    return torch.get_num_threads()


def _fit_chunk(args: tuple) -> BatchFit:
    images, sigma, psf, init, mask, kwargs = args
    return fit(images, sigma, psf, init=init, mask=mask, device="cpu", **kwargs)


def concat_fits(parts: list[BatchFit], seconds: float, device: str) -> BatchFit:
    """One BatchFit from the fits of consecutive chunks of a batch."""

    def cat(name: str) -> Tensor | None:
        vals = [getattr(p, name) for p in parts]
        return None if any(v is None for v in vals) else torch.cat(vals)

    first = parts[0]
    return BatchFit(
        kind=first.kind,
        names=first.names,
        params=cat("params"),
        errors=cat("errors"),
        covariance=cat("covariance"),
        chi2=cat("chi2"),
        dof=cat("dof"),
        iterations=cat("iterations"),
        converged=cat("converged"),
        reasons=[r for p in parts for r in p.reasons],
        seconds=seconds,
        device=device,
        model=cat("model"),
        fit_mask=cat("fit_mask"),
        bootstrap_errors=cat("bootstrap_errors"),
    )


class CpuPool:
    """A pool of ``processes`` fitting workers (one torch thread each); reuse it for many fits."""

    def __init__(self, processes: int, warm: dict | None = None) -> None:
        """warm: {"shape": (H, W), "psf": psf, "compile": bool} makes every worker build that
        renderer (and compile, if asked) as it starts."""
        self.processes = max(1, int(processes))
        self._pool = ProcessPoolExecutor(
            max_workers=self.processes, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(warm,)
        )
        list(self._pool.map(_ready, range(self.processes)))  # start every worker now

    def fit(
        self,
        images: Tensor,
        sigma: Tensor | None = None,
        psf: Tensor | None = None,
        *,
        init: Tensor | None = None,
        mask: Tensor | None = None,
        chunk: int | None = None,
        **kwargs,
    ) -> BatchFit:
        """:func:`fitting.engine.fit` of the batch, cut into chunks of ``chunk`` galaxies fitted by
        the workers side by side (default: equal chunks of at most MAX_CHUNK galaxies, as many per
        worker, so that the workers finish together). Keyword arguments go to ``fit`` (on the CPU)."""
        t0 = time.perf_counter()
        images = torch.as_tensor(images)
        n = images.shape[0]
        if n == 0:  # fit() says what is wrong with the batch
            return fit(images, sigma, psf, init=init, mask=mask, device="cpu", **kwargs)
        if not chunk:  # equal chunks, a multiple of the worker count, each at most MAX_CHUNK
            rounds = max(1, math.ceil(n / (self.processes * MAX_CHUNK)))
            chunk = max(MIN_CHUNK, math.ceil(n / (rounds * self.processes)))
        jobs = []
        for s in range(0, n, chunk):
            sl = slice(s, s + chunk)
            jobs.append(
                (
                    images[sl],
                    None if sigma is None else torch.as_tensor(sigma)[sl],
                    psf,
                    None if init is None else torch.as_tensor(init)[sl],
                    None if mask is None else torch.as_tensor(mask)[sl],
                    kwargs,
                )
            )
        parts = list(self._pool.map(_fit_chunk, jobs))
        return concat_fits(parts, time.perf_counter() - t0, f"cpu x {self.processes} processes")

    def close(self) -> None:
        self._pool.shutdown()

    def __enter__(self) -> CpuPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
