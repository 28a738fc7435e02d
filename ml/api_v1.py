"""API of the ml app under /api/v1/ (registered by config/api.py): model versions, CNN
predictions and morphology posteriors (read-only), the predictions part of the galaxy detail, and
the latent space's similar galaxies (GET galaxies/<pgc>/similar/, POST similar/ with an image)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.readonly import app_routes, model_serializer, rows_of_galaxy
from catalog.models import Galaxy
from catalog.selectors import visible_images
from core.api.errors import ApiError
from core.api.throttles import InferenceThrottle
from ml.conf import conf
from ml.models import MorphologyPosterior, Prediction

#: Neighbours returned when k is not given.
DEFAULT_K = 10

ENDPOINTS = (
    ("ModelVersion", "model-versions", "CNN model versions: architecture, training data, metrics, weights checksum"),
    ("Prediction", "predictions", "CNN inclination predictions"),
    ("MorphologyPosterior", "morphology", "Morphology posteriors: medians, modes, intervals and covariance of profile parameters"),
)


def routes() -> list[tuple[str, type, str]]:
    """(prefix, viewset, basename) of the ml endpoints."""
    return [
        *app_routes("ml", ENDPOINTS),
        (r"galaxies/(?P<pgc>[0-9]{1,18})/similar", SimilarGalaxiesViewSet, "galaxy-similar"),
        ("similar", MoreLikeThisViewSet, "more-like-this"),
    ]


def galaxy_extras(galaxy, request=None) -> dict:
    """{'predictions': [...], 'morphology': [...]} for the galaxy detail (GALCAT_GALAXY_API_EXTRAS);
    morphology: the posteriors of the active morphology version for the images the caller may see."""
    images = visible_images(getattr(request, "user", None)).filter(galaxy=galaxy)
    rows = MorphologyPosterior.objects.filter(galaxy=galaxy, model_version__active=True, image__in=images).order_by("image_id", "kind")
    return {
        "predictions": rows_of_galaxy(Prediction, galaxy, request),
        "morphology": list(model_serializer(MorphologyPosterior)(rows[:50], many=True).data),
    }


# ---------------------------------------------------------------------------------------------
# Latent space: similar galaxies of a catalog galaxy, and "more like this" for an uploaded image
# ---------------------------------------------------------------------------------------------
class NeighbourSerializer(serializers.Serializer):
    pgc = serializers.IntegerField(help_text="PGC number of the similar galaxy")
    image_id = serializers.IntegerField(help_text="Its image nearest in latent space")
    distance = serializers.FloatField(help_text="Cosine distance of the embeddings (0 identical, 2 opposite) [1]")
    ra = serializers.FloatField(allow_null=True, help_text="Right ascension (ICRS) [deg]")
    dec = serializers.FloatField(allow_null=True, help_text="Declination (ICRS) [deg]")
    band = serializers.CharField(help_text="Band of the image")
    image_url = serializers.CharField(help_text="URL of the image file")


class SimilarSerializer(serializers.Serializer):
    pgc = serializers.IntegerField(allow_null=True, help_text="The galaxy asked about (null for an uploaded image)")
    k = serializers.IntegerField(help_text="Neighbours asked for")
    model_version = serializers.CharField(help_text="Latent model version (name v version)")
    outlier_score = serializers.FloatField(required=False, help_text="Outlier score of the uploaded image (higher is more unusual) [1]")
    neighbours = NeighbourSerializer(many=True, help_text="Nearest first; only images the caller may see")


class MoreLikeThisSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="PNG, JPEG, GIF or FITS image, at most GALCAT_UPLOAD_MAX_BYTES and GALCAT_UPLOAD_MAX_PIXELS")
    k = serializers.IntegerField(required=False, min_value=1, help_text="Neighbours wanted (default 10, at most GALCAT_LATENT_MAX_K)")


def _k(raw) -> int:
    """The k parameter (default 10), 400 unless an integer in 1..GALCAT_LATENT_MAX_K."""
    if raw in (None, ""):
        return DEFAULT_K
    try:
        k = int(raw)
    except (TypeError, ValueError):
        raise ApiError(f"k must be an integer, got {raw!r}", field="k") from None
    if not 1 <= k <= int(conf.LATENT_MAX_K):
        raise ApiError(f"k must be between 1 and {conf.LATENT_MAX_K}, got {k}", field="k")
    return k


def _answer(out: dict, k: int, pgc: int | None) -> Response:
    body = {"pgc": pgc, "k": k, "model_version": str(out["model_version"]), "neighbours": out["neighbours"]}
    if "outlier_score" in out:
        body["outlier_score"] = out["outlier_score"]
    return Response(body)


class SimilarGalaxiesViewSet(viewsets.ViewSet):
    """The k galaxies most similar to a catalog galaxy in the latent space of its images."""

    permission_classes = [AllowAny]

    @extend_schema(
        summary="Similar galaxies (latent space; without the galaxy and its sky neighbours within GALCAT_LATENT_EXCLUDE_ARCSEC)",
        parameters=[OpenApiParameter("k", OpenApiTypes.INT, description="Neighbours wanted (default 10)")],
        responses={200: SimilarSerializer},
    )
    def list(self, request: Request, pgc: str | None = None) -> Response:
        from ml.latent_services import LatentUnavailable, similar

        k = _k(request.query_params.get("k"))
        try:
            out = similar(int(pgc), k, request.user)
        except Galaxy.DoesNotExist:
            raise ApiError(f"PGC {pgc} is not in the catalog", status_code=404, code="not_found") from None
        except LatentUnavailable as exc:
            raise ApiError(str(exc), status_code=503, code="unavailable") from None
        return _answer(out, k, int(pgc))


class MoreLikeThisViewSet(viewsets.ViewSet):
    """ "More like this": POST an image, get the catalog galaxies nearest to it in latent space."""

    permission_classes = [AllowAny]
    parser_classes = [MultiPartParser, FormParser]

    def get_throttles(self):
        return [*super().get_throttles(), InferenceThrottle()]

    @extend_schema(
        summary="More like this: catalog galaxies nearest to an uploaded image in latent space",
        request=MoreLikeThisSerializer,
        responses={200: SimilarSerializer},
    )
    def create(self, request: Request) -> Response:
        from ml.api import ApiInputError, Busy, _bounded, checked_image
        from ml.latent_services import LatentUnavailable, similar_to_image

        form = MoreLikeThisSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        k = _k(form.validated_data.get("k"))
        limit = int(conf.UPLOAD_MAX_BYTES)
        if upload.size > limit:  # refuse before reading the bytes into memory
            raise ApiError(f"file of {upload.size} bytes exceeds the upload limit of {limit} bytes", status_code=413, field="file")
        try:
            image = checked_image(upload.read(), upload.name)
            out = similar_to_image(image, k, request.user, run=_bounded)
        except ApiInputError as exc:
            raise ApiError(str(exc), field="file") from None
        except Busy as exc:
            raise ApiError(str(exc), status_code=503, code="busy") from None
        except LatentUnavailable as exc:
            raise ApiError(str(exc), status_code=503, code="unavailable") from None
        return _answer(out, k, None)
