"""Receivers of the ml app."""

from django.dispatch import receiver

from fitting.signals import fits_stored


@receiver(fits_stored, dispatch_uid="galcat.ml.fits_stored")
def on_fits_stored(sender, image_ids=(), **kwargs) -> None:
    """The axis-ratio baseline beside stored CNN predictions follows new fits."""
    from ml.services import refresh_axis_ratios

    refresh_axis_ratios(list(image_ids))


def _refresh_galaxy(sender, instance, **kwargs) -> None:
    """A prediction saved one at a time (admin, scripts): its galaxy's stored CNN columns follow.
    predict_and_store and refresh_axis_ratios refresh set-wise themselves."""
    from ml.columns import refresh_prediction_summary

    refresh_prediction_summary([instance.galaxy_id])


def _refresh_all(sender, instance, **kwargs) -> None:
    """A model version saved: which one is active may have changed."""
    from ml.columns import refresh_prediction_summary

    refresh_prediction_summary()


def _refresh_all_after(sender, instance, **kwargs) -> None:
    """A model version deleted (its predictions go with it): after the commit."""
    from django.db import transaction

    from ml.columns import refresh_prediction_summary

    transaction.on_commit(refresh_prediction_summary)


def connect_summary_receivers() -> None:
    from django.db.models.signals import post_delete, post_save

    from ml.models import ModelVersion, Prediction

    post_save.connect(_refresh_galaxy, sender=Prediction, dispatch_uid="galcat.ml.summary.prediction")
    post_save.connect(_refresh_all, sender=ModelVersion, dispatch_uid="galcat.ml.summary.model_version")
    post_delete.connect(_refresh_all_after, sender=ModelVersion, dispatch_uid="galcat.ml.summary.model_version_deleted")
