"""Receivers of the ml app."""

from django.dispatch import receiver

from fitting.signals import fits_stored


@receiver(fits_stored, dispatch_uid="galcat.ml.fits_stored")
def on_fits_stored(sender, image_ids=(), **kwargs) -> None:
    """The axis-ratio baseline beside stored CNN predictions follows new fits."""
    from ml.services import refresh_axis_ratios

    refresh_axis_ratios(list(image_ids))
