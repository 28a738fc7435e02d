"""Worker tasks of the fitting app (django-q2; also called inline by commands and tests)."""

from __future__ import annotations

from fitting.conf import conf
from fitting.models import FitResult
from fitting.services import fit_and_store, stale_image_ids
from jobs.models import Job


def fit_images(image_ids: list[int], model_kind: str = FitResult.Kind.SERSIC, job_id: int | None = None) -> dict:
    """Fit one batch of catalog images and upsert one FitResult per (image, model, engine version),
    so a re-delivered or repeated batch writes each row once. With job_id the Job's progress
    follows the fit; as a batch function of jobs.tasks.run_batched it gets no job id (the
    runner owns the Job)."""
    reporter = None
    if job_id is not None:
        from jobs.services import JobReporter

        reporter = JobReporter(Job.objects.get(pk=job_id))
        reporter.start(len(image_ids), message=f"fitting {len(image_ids)} images ({model_kind})")
    out = fit_and_store(list(image_ids), model_kind, progress=reporter.progress if reporter else None)
    if reporter is not None:
        reporter.finish(result=out, message=f"{out['stored']} fits stored, {out['failed']} failed")
    return out


def fit_stale(model_kind: str = FitResult.Kind.SERSIC) -> dict:
    """Nightly: queue fits of every image the current engine has not fitted with this model."""
    from jobs.tasks import queue_for_task, run_batched

    ids = stale_image_ids(model_kind)
    if not ids:
        return {"queued": 0}
    job = run_batched(
        "fit",
        "fitting.tasks.fit_images",
        ids,
        batch_size=int(conf.IMAGE_BATCH_SIZE),
        queue=queue_for_task("fitting.tasks.fit_images"),
        func_kwargs={"model_kind": model_kind},
        params={"model": model_kind},
    )
    return {"queued": len(ids), "job": job.pk}
