"""Signals of the fitting app; the apps that build on fits connect to them."""

from django.dispatch import Signal

# Sent inside the transaction that stores profile fits, with image_ids=[...] of the images that
# got a converged fit; receivers write in that transaction (ml: the axis-ratio baseline).
fits_stored = Signal()
