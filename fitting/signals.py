"""Signals of the fitting app; the apps that build on fits connect to them."""

from django.dispatch import Signal

# Sent inside the transaction that stores profile fits, with image_ids=[...] of the images that
# got a converged fit; receivers write in that transaction (ml: the axis-ratio baseline).
fits_stored = Signal()


def _refresh_fit(sender, instance, **kwargs) -> None:
    """A fit saved one at a time (admin, scripts): its galaxy's stored fit columns follow. The
    fitting service refreshes set-wise itself."""
    from catalog.models import Image
    from fitting.columns import refresh_fit_summary

    refresh_fit_summary(Image.objects.filter(pk=instance.image_id).values_list("galaxy_id", flat=True))


def connect_summary_receivers() -> None:
    from django.db.models.signals import post_save

    from fitting.models import FitResult

    post_save.connect(_refresh_fit, sender=FitResult, dispatch_uid="galcat.fitting.summary.fit")
