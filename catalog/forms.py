"""Forms of the catalog's pages: image uploads by members (the page and the admin's "Add image")."""

from __future__ import annotations

from django import forms

from catalog.api.uploads import UploadError, store_uploaded_image
from catalog.conf import conf
from catalog.models import Image


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """One or many files from one <input type=file multiple>."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".png,.jpg,.jpeg,.gif,.fits,.fit,.fits.gz"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(f, initial) for f in files if f] or super().clean(None, initial)


class ImageUploadForm(forms.Form):
    """What the upload page asks for; size, format and channels are read from each file."""

    files = MultipleFileField(label="Image files", help_text="PNG, JPEG, GIF or FITS; several files of one galaxy and band at once")
    pgc = forms.IntegerField(min_value=1, label="PGC number", help_text="The galaxy shown (it must be in the catalog)")
    band = forms.ChoiceField(choices=Image.Band.choices, initial=Image.Band.G, label="Band")
    survey = forms.CharField(max_length=40, initial="SDSS", label="Survey")
    pixel_scale = forms.FloatField(
        required=False, min_value=0, label="Pixel scale [arcsec/pixel]", help_text="Leave empty to read it from a FITS WCS"
    )
    orientation = forms.ChoiceField(choices=Image.Orientation.choices, initial=Image.Orientation.UNKNOWN, label="Orientation")
    is_public = forms.BooleanField(required=False, initial=True, label="Public", help_text="Visible to everyone")

    def store(self, user) -> list[dict]:
        """Store every file through the API's function (validated, content-addressed, queued for
        fit and prediction); one result per file: name, image, created, error."""
        data = self.cleaned_data
        results = []
        for f in data["files"]:
            item = {"name": f.name, "image": None, "created": False, "error": ""}
            if f.size > conf.UPLOAD_MAX_BYTES:
                item["error"] = f"{f.size} bytes exceed the upload limit of {conf.UPLOAD_MAX_BYTES} bytes"
            else:
                try:
                    item["image"], item["created"] = store_uploaded_image(
                        f.read(),
                        f.name,
                        pgc=data["pgc"],
                        band=data["band"],
                        user=user,
                        survey=data["survey"] or "SDSS",
                        pixel_scale=data["pixel_scale"],
                        orientation=data["orientation"],
                        is_public=data["is_public"],
                    )
                except UploadError as exc:
                    item["error"] = exc.message
            results.append(item)
        return results


class ImageAdminAddForm(forms.ModelForm):
    """The admin's "Add image": a file and what the file cannot say; format, size, channels and
    sha256 come from the file itself, through the same store as the upload page and the API."""

    upload = forms.FileField(label="File", help_text="PNG, JPEG, GIF or FITS")

    class Meta:
        model = Image
        fields = ("galaxy", "band", "survey", "pixel_scale", "orientation", "is_public")

    def clean(self):
        from catalog.importers.images import ImageDecodeError, decode_image

        data = super().clean()
        upload = data.get("upload")
        if upload is not None:
            if upload.size > conf.UPLOAD_MAX_BYTES:
                self.add_error("upload", f"{upload.size} bytes exceed the upload limit of {conf.UPLOAD_MAX_BYTES} bytes")
            else:
                try:
                    decode_image(upload.read(), upload.name)
                except ImageDecodeError as exc:
                    self.add_error("upload", str(exc))
                upload.seek(0)
        return data

    def store(self, user) -> Image:
        """Store the validated file; the stored Image (an existing one when the bytes are known)."""
        data = self.cleaned_data
        image, _ = store_uploaded_image(
            data["upload"].read(),
            data["upload"].name,
            pgc=data["galaxy"].pk,
            band=data["band"],
            user=user,
            survey=data["survey"] or "SDSS",
            pixel_scale=data["pixel_scale"],
            orientation=data["orientation"],
            is_public=data["is_public"],
        )
        return image
