"""Signal receivers of the catalog. Other apps connect to catalog.signals.images_added."""

from django.dispatch import Signal

# Sent after images are stored, with image_ids=[...]; fitting and ml enqueue their work on it.
images_added = Signal()
# Sent after votes are stored, with galaxy_ids=[...]; the consensus is recomputed on it.
votes_added = Signal()

# Receivers: new images and votes queue work in batches (catalog.triggers).
from catalog import triggers  # noqa: E402,F401
