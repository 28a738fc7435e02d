"""Small factories for tests: rows built through the models' own save paths."""

from __future__ import annotations

import io
import math

import factory
import numpy as np
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from catalog.models import Galaxy, GalaxyName, Image
from zoo.models import InclinationVote


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.org")
    password = factory.django.Password("pw-for-tests-123")


#: Seed of the factories' random values: each run builds the same rows.
SEED = 20260101


def _draw(n: int, what: int) -> float:
    """A uniform [0, 1) number fixed by the factory sequence number n and the field `what`."""
    return float(np.random.default_rng([SEED, n, what]).random())


class GalaxyFactory(DjangoModelFactory):
    """Galaxy number n: pgc 900000 + n, a position uniform on the sphere and vhel in
    [300, 15000] km/s, all fixed by n (a seeded generator per sequence number)."""

    class Meta:
        model = Galaxy

    pgc = factory.Sequence(lambda n: 900000 + n)
    ra = factory.Sequence(lambda n: 359.999 * _draw(n, 0))
    dec = factory.Sequence(lambda n: math.degrees(math.asin(2.0 * _draw(n, 1) - 1.0)))
    vhel = factory.Sequence(lambda n: 300.0 + (15000.0 - 300.0) * _draw(n, 2))
    d25 = 1.5
    b_a = 0.4
    pa = 45.0
    type = "Sc"


class GalaxyNameFactory(DjangoModelFactory):
    class Meta:
        model = GalaxyName

    galaxy = factory.SubFactory(GalaxyFactory)
    name = factory.Sequence(lambda n: f"UGC {10000 + n}")


def png_bytes(size: int = 64, inc: float = 70.0, inverted: bool = True) -> bytes:
    """A small grey PNG of an inclined exponential disk."""
    from PIL import Image as PILImage

    from catalog.sample import render_disk

    grey = render_disk(inc, size=size)
    if not inverted:
        grey = 255 - grey
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, format="PNG")
    return buf.getvalue()


def make_image(galaxy: Galaxy, band: str = "g", *, inc: float = 70.0, size: int = 64) -> Image:
    """Store a rendered PNG through the importer's storage path and return its Image row."""
    from catalog.importers.images import decode_image, store_image_bytes

    data = png_bytes(size, inc)
    decoded = decode_image(data, "x.png")
    sha, name = store_image_bytes(data, decoded)
    return Image.objects.create(
        galaxy=galaxy,
        band=band,
        file=name,
        format="png",
        width=decoded.width,
        height=decoded.height,
        channels=1,
        inverted=decoded.inverted,
        sha256=sha,
        orientation=Image.Orientation.MAJOR_HORIZONTAL,
    )


class VoteFactory(DjangoModelFactory):
    class Meta:
        model = InclinationVote

    user = factory.SubFactory(UserFactory)
    galaxy = factory.SubFactory(GalaxyFactory)
    inc = 70.0
    source = InclinationVote.Source.WEB
