"""Image uploads through the API: decoded fully first, stored by content, once."""

from __future__ import annotations

from django.db import transaction

from catalog.conf import conf
from catalog.importers.images import ImageDecodeError, check_usable, decode_image, pixel_scale_from_wcs, store_image_bytes
from catalog.models import Galaxy, Image
from catalog.signals import images_added
from core.roles import is_member


class UploadError(ValueError):
    """An upload was refused; nothing was stored. `field` names the offending part."""

    def __init__(self, message: str, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def store_uploaded_image(
    data: bytes,
    name: str,
    *,
    pgc: int,
    band: str,
    user,
    survey: str = "SDSS",
    pixel_scale: float | None = None,
    orientation: str = Image.Orientation.UNKNOWN,
    inverted: bool | None = None,
    is_public: bool = True,
) -> tuple[Image, bool]:
    """Store one uploaded image of galaxy `pgc`; (image, created). Equal bytes for the same
    galaxy and band give back the stored image (created False). UploadError on bad input."""
    if not is_member(user):
        raise UploadError("uploading images needs a collaboration member account", status=403)
    if band not in Image.Band.values:
        raise UploadError(f"unknown band {band!r}", field="band")
    if orientation not in Image.Orientation.values:
        raise UploadError(f"unknown orientation {orientation!r}", field="orientation")
    limit = conf.UPLOAD_MAX_BYTES
    if len(data) > limit:
        raise UploadError(f"file of {len(data)} bytes exceeds the upload limit of {limit} bytes", field="file", status=413)
    if not Galaxy.objects.filter(pk=pgc).exists():
        raise UploadError(f"PGC {pgc} is not in the catalog", field="pgc")
    try:
        decoded = decode_image(data, name, max_pixels=conf.UPLOAD_MAX_PIXELS)
        check_usable(decoded)
    except ImageDecodeError as exc:
        raise UploadError(str(exc), field="file") from None
    with transaction.atomic():
        sha, stored = store_image_bytes(data, decoded)
        image, created = Image.objects.get_or_create(
            galaxy_id=pgc,
            band=band,
            sha256=sha,
            defaults=dict(
                survey=survey,
                file=stored,
                format=decoded.format,
                width=decoded.width,
                height=decoded.height,
                channels=decoded.channels,
                pixel_scale=pixel_scale or pixel_scale_from_wcs(decoded.wcs),
                orientation=orientation,
                inverted=decoded.inverted if inverted is None else inverted,
                wcs=decoded.wcs,
                original_name=(name or "")[:255],
                is_public=is_public,
                uploaded_by=user,
            ),
        )
        if created:
            transaction.on_commit(lambda: images_added.send(sender=Image, image_ids=[image.pk]))
    return image, created
