"""Signals of the catalog, and its receivers. Other apps connect to images_added."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from catalog.conf import conf
from catalog.models import Image
from catalog.summaries import refresh_galaxy_summaries
from jobs.triggers import Step, collect_quietly, register_collector

# Sent after images are stored, with image_ids=[...]; fitting and ml enqueue their work on it.
images_added = Signal()

IMAGES = "collect_images"


def pipeline_job_kind(path: str) -> str:
    """The kind of a pipeline job: fitting.tasks.fit_images -> fit, ml.tasks.predict_images -> predict."""
    name = path.rsplit(".", 1)[-1]
    return name.removesuffix("_images") or name


def image_steps(ids: list[int]) -> list[Step]:
    """New images go through every function of GALCAT_IMAGE_PIPELINE in batches."""
    return [(path, conf.IMAGE_BATCH_SIZE, pipeline_job_kind(path)) for path in conf.IMAGE_PIPELINE]


register_collector(IMAGES, image_steps)


@receiver(images_added, dispatch_uid="galcat.catalog.images_added")
def on_images_added(sender, image_ids=(), **kwargs) -> None:
    collect_quietly(IMAGES, image_ids)


@receiver(post_save, sender=Image, dispatch_uid="galcat.catalog.image_saved")
@receiver(post_delete, sender=Image, dispatch_uid="galcat.catalog.image_deleted")
def on_image_changed(sender, instance, **kwargs) -> None:
    """An image saved (made private or public) or deleted one at a time: its galaxy's derived
    columns, which count public images only, follow once the change commits (after a delete the
    galaxy itself may be going, so nothing is written inside the cascade)."""
    pgc = instance.galaxy_id
    if pgc is not None:
        transaction.on_commit(lambda: refresh_galaxy_summaries([pgc]))
