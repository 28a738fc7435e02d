"""Worker tasks of the ml app (django-q2; also called inline by commands and tests)."""

from __future__ import annotations

from catalog.models import Image
from jobs.models import Job
from ml.conf import conf
from ml.models import ModelVersion, Prediction
from ml.services import active_version, predict_and_store


def predict_images(image_ids: list[int], job_id: int | None = None, model_version_id: int | None = None) -> dict:
    """Predict catalog images with the active (or given) model version; one Prediction per image
    and version (re-runs update it). With job_id, the Job's progress follows the batches; as a
    batch function of jobs.tasks.run_batched it gets no job id (the runner owns the Job)."""
    mv = ModelVersion.objects.get(pk=model_version_id) if model_version_id else active_version()
    reporter = None
    if job_id is not None:
        from jobs.services import JobReporter

        reporter = JobReporter(Job.objects.get(pk=job_id))
        reporter.set_total(len(image_ids))
    out = predict_and_store(list(image_ids), mv, progress=reporter.progress if reporter else None)
    return {"stored": out["stored"], "skipped": out["skipped"]}


def stale_image_ids(mv: ModelVersion | None = None) -> list[int]:
    """Images without a prediction by the active model version."""
    mv = mv or active_version()
    done = Prediction.objects.filter(model_version=mv).values("image_id")
    return list(Image.objects.exclude(pk__in=done).values_list("pk", flat=True))


def predict_stale() -> dict:
    """Nightly: queue predictions for every image the active version has not predicted."""
    from jobs.tasks import queue_for_task, run_batched

    ids = stale_image_ids()
    if not ids:
        return {"queued": 0}
    job = run_batched(
        "predict",
        "ml.tasks.predict_images",
        ids,
        batch_size=int(conf.IMAGE_BATCH_SIZE),
        queue=queue_for_task("ml.tasks.predict_images"),
    )
    return {"queued": len(ids), "job": job.pk}


def morph_images(image_ids: list[int], job_id: int | None = None, model_version_id: int | None = None) -> dict:
    """Morphology posteriors of catalog images by the active (or given) morphology version (the
    shipped one is registered when none is active); one MorphologyPosterior per image, version and
    model kind (re-runs update it). Job progress as for :func:`predict_images`."""
    from ml.services import active_morph_version, morph_and_store

    mv = ModelVersion.objects.get(pk=model_version_id) if model_version_id else active_morph_version(register_default=True)
    reporter = None
    if job_id is not None:
        from jobs.services import JobReporter

        reporter = JobReporter(Job.objects.get(pk=job_id))
        reporter.set_total(len(image_ids))
    out = morph_and_store(list(image_ids), mv, progress=reporter.progress if reporter else None)
    return {"stored": out["stored"], "skipped": out["skipped"]}


def embed_images(image_ids: list[int], job_id: int | None = None, model_version_id: int | None = None) -> dict:
    """Latent embeddings of catalog images by the active (or given) latent version (the shipped one
    is registered when none is active); one ImageEmbedding per image and version (re-runs update
    it). Nothing to do while no latent model exists. Job progress as for :func:`predict_images`."""
    from ml.latent_services import embed_and_store
    from ml.services import active_latent_version

    mv = ModelVersion.objects.get(pk=model_version_id) if model_version_id else active_latent_version(register_default=True)
    if mv is None:
        return {"stored": 0, "skipped": len(image_ids), "message": "no latent model"}
    reporter = None
    if job_id is not None:
        from jobs.services import JobReporter

        reporter = JobReporter(Job.objects.get(pk=job_id))
        reporter.set_total(len(image_ids))
    out = embed_and_store(list(image_ids), mv, progress=reporter.progress if reporter else None)
    return {"stored": out["stored"], "skipped": out["skipped"]}


def latent_sweep(progress=None) -> dict:
    """Nightly: embed the images the active latent version has not embedded, refit its outlier
    density on every embedding and rescore them (ml.latent_services.latent_sweep)."""
    from ml.latent_services import latent_sweep as sweep

    return sweep(progress=progress)
