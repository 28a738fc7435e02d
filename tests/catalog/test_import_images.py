import io

import numpy as np
import pytest
from astropy.io import fits
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from catalog.importers.images import decode_image, import_images
from catalog.importers.report import ImportValidationError
from catalog.models import Galaxy, Image
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


def test_shared_sdss_images(shared_data):
    report = import_images([shared_data / "sdss"], orientation=Image.Orientation.MAJOR_HORIZONTAL)
    assert report.created == 40 and Image.objects.count() == 40
    # pgc48307's g, r and i files hold the same bytes: stored once, registered for each band
    assert sum("same bytes" in w for w in report.warnings) == 2
    shared = Image.objects.filter(galaxy_id=48307).exclude(band="gri")
    assert shared.values("sha256").distinct().count() == 1 and shared.count() == 3
    img = Image.objects.get(galaxy_id=1844, band="g")
    assert (img.width, img.height, img.channels, img.format) == (512, 512, 1, "png")
    assert img.inverted is True  # galaxy dark on light, as the shared README says
    colour = Image.objects.get(galaxy_id=1844, band="gri")
    assert colour.channels == 3 and colour.format == "jpeg" and colour.inverted is False
    assert default_storage.exists(img.file.name)
    # galaxies the catalog does not hold yet are kept as placeholders awaiting a position
    assert Galaxy.objects.awaiting_position().count() == 10
    again = import_images([shared_data / "sdss"])
    assert again.created == 0 and Image.objects.count() == 40


@pytest.mark.parametrize(
    "content,words",
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "broken or truncated"),
        (bytes(range(256)) * 8, "not an image"),
        (png_bytes(64)[:-200], "broken or truncated"),
        (b"SIMPLE  = garbage" * 10, "broken FITS"),
    ],
)
def test_broken_images_are_refused_and_nothing_written(tmp_path, content, words):
    good = tmp_path / "pgc10_g.png"
    good.write_bytes(png_bytes(64))
    bad = tmp_path / "pgc11_r.png"
    bad.write_bytes(content)
    with pytest.raises(ImportValidationError) as info:
        import_images([tmp_path])
    assert "pgc11_r.png" in str(info.value) and words in str(info.value)
    assert Image.objects.count() == 0 and Galaxy.objects.count() == 0
    report = import_images([tmp_path], partial=True)
    assert report.created == 1 and report.skipped == 1


def test_enormous_images_are_refused(tmp_path, settings):
    settings.GALCAT_IMAGE_MAX_PIXELS = 100 * 100
    (tmp_path / "pgc10_g.png").write_bytes(png_bytes(128))
    with pytest.raises(ImportValidationError, match="exceeds the limit"):
        import_images([tmp_path])
    settings.GALCAT_IMAGE_MAX_PIXELS = 10**8
    settings.GALCAT_IMAGE_MAX_BYTES = 1000
    with pytest.raises(ImportValidationError, match="bytes exceeds the limit"):
        import_images([tmp_path])
    assert Image.objects.count() == 0


def test_bad_names_and_unknown_bands(tmp_path):
    (tmp_path / "galaxy.png").write_bytes(png_bytes(32))
    (tmp_path / "pgc12_q.png").write_bytes(png_bytes(32))
    with pytest.raises(ImportValidationError) as info:
        import_images([tmp_path])
    text = str(info.value)
    assert "galaxy.png" in text and "manifest" in text and "unknown band 'q'" in text


def test_fits_image_with_wcs_and_manifest(tmp_path):
    data = np.random.default_rng(1).normal(size=(40, 50)).astype(np.float32)
    hdu = fits.PrimaryHDU(data)
    hdu.header.update(
        {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 20.0, "CDELT1": -0.396 / 3600, "CDELT2": 0.396 / 3600}
    )
    buf = io.BytesIO()
    hdu.writeto(buf)
    (tmp_path / "cutout.fits").write_bytes(buf.getvalue())
    (tmp_path / "manifest.csv").write_text("file,pgc,band,survey\ncutout.fits,77,r,SDSS\n")
    report = import_images(manifest=tmp_path / "manifest.csv")
    assert report.created == 1
    img = Image.objects.get(galaxy_id=77)
    assert (img.format, img.width, img.height) == ("fits", 50, 40)
    assert img.pixel_scale == pytest.approx(0.396)
    assert img.wcs["CTYPE1"] == "RA---TAN"


def test_decode_rejects_fits_without_image():
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU()]).writeto(buf)
    with pytest.raises(ValueError, match="no 2-D image"):
        decode_image(buf.getvalue(), "x.fits")


def test_command_without_arguments_and_with_garbage(tmp_path):
    with pytest.raises(CommandError, match="give image files"):
        call_command("import_images", verbosity=0)
    (tmp_path / "pgc5_g.png").write_bytes(b"garbage")
    with pytest.raises(CommandError, match="pgc5_g.png"):
        call_command("import_images", str(tmp_path), verbosity=0)


def test_many_images_are_written_in_batches(tmp_path, django_assert_max_num_queries):
    for pgc in range(1, 61):
        (tmp_path / f"pgc{pgc}_g.png").write_bytes(png_bytes(32 + pgc % 5))
    (tmp_path / "pgc61_r.png").write_bytes(png_bytes(33))  # same bytes as pgc1_g.png, other galaxy
    with django_assert_max_num_queries(12):  # not one query (or more) per image
        report = import_images([tmp_path])
    assert report.created == 61 and Image.objects.count() == 61
    assert Image.objects.values("sha256").distinct().count() == 5
    assert sum("same bytes" in w for w in report.warnings) == 56
    again = import_images([tmp_path])
    assert again.created == 0 and again.extra["already stored"] == 61


def test_images_too_small_for_the_cnn_are_refused_as_on_upload(tmp_path, settings):
    """The command applies the upload path's check (catalog.importers.images.check_usable)."""
    settings.GALCAT_IMAGE_MIN_SIZE = 20
    (tmp_path / "pgc10_g.png").write_bytes(png_bytes(64))
    (tmp_path / "pgc11_g.png").write_bytes(png_bytes(12))
    with pytest.raises(CommandError, match=r"pgc11_g.png: image of 12x12 pixels is too small"):
        call_command("import_images", str(tmp_path), verbosity=0)
    assert Image.objects.count() == 0
    report = import_images([tmp_path], partial=True)
    assert report.created == 1 and report.skipped == 1 and Image.objects.get().galaxy_id == 10
