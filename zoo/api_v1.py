"""The zoo's part of the API under /api/v1/ (registered by config/api.py): volunteers' votes,
and the consensus part of the galaxy detail."""

from __future__ import annotations

import functools
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.serializers import PGC_MAX
from core.api.errors import ERROR_RESPONSES, ApiError, pgc_param
from core.api.fields import IntField, NumberField
from core.api.pagination import KeysetPagination
from core.api.permissions import IsVolunteer
from core.roles import is_curator
from zoo.models import GIZ_FLAGS, InclinationVote
from zoo.services import current_consensus
from zoo.voting import NOTE_MAX_CHARS, RateLimited, VoteError, record_vote


class VoteSerializer(serializers.ModelSerializer):
    """An inclination vote (read)."""

    id = serializers.IntegerField(read_only=True, help_text="Vote id")
    pgc = serializers.IntegerField(source="galaxy_id", read_only=True, help_text="PGC number of the galaxy measured")
    volunteer = serializers.CharField(source="user.username", read_only=True, help_text="User name of the volunteer")

    class Meta:
        model = InclinationVote
        fields = (
            "id",
            "pgc",
            "volunteer",
            "inc",
            "rejected",
            "std1",
            "std2",
            *GIZ_FLAGS,
            "note",
            "kind",
            "source",
            "round",
            "checkout_time",
            "checkin_time",
            "created",
        )
        read_only_fields = fields


def _flag_field(name: str) -> serializers.BooleanField:
    return serializers.BooleanField(default=False, help_text=InclinationVote._meta.get_field(name).help_text)


class VoteCreateSerializer(serializers.Serializer):
    """A new inclination vote of the signed-in volunteer."""

    pgc = IntField(min_value=1, max_value=PGC_MAX, help_text="PGC number of the galaxy measured")
    inc = NumberField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=90,
        help_text="Measured inclination; omit or null when rejected or face-on [deg]",
    )
    rejected = serializers.BooleanField(default=False, help_text="The volunteer rejects or flags the galaxy")
    std1 = IntField(
        required=False, allow_null=True, min_value=1, max_value=PGC_MAX, help_text="PGC of the standard on one side of the target"
    )
    std2 = IntField(required=False, allow_null=True, min_value=1, max_value=PGC_MAX, help_text="PGC of the standard on the other side")
    not_sure = _flag_field("not_sure")
    better_image = _flag_field("better_image")
    bad_tf = _flag_field("bad_tf")
    ambiguous = _flag_field("ambiguous")
    disturbed = _flag_field("disturbed")
    hi = _flag_field("hi")
    face_on = _flag_field("face_on")
    not_spiral = _flag_field("not_spiral")
    multiple = _flag_field("multiple")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTE_MAX_CHARS, help_text="Free-text note")
    client_token = serializers.CharField(
        required=False, allow_null=True, max_length=64, help_text="One-time token of the client form; a replay is refused"
    )
    checkout_time = serializers.DateTimeField(required=False, allow_null=True, help_text="When the target was shown [UTC]")


@extend_schema_view(
    list=extend_schema(
        summary="Inclination votes: one's own (curators: all)",
        parameters=[
            OpenApiParameter("pgc", OpenApiTypes.INT, description="Only votes on this galaxy"),
            OpenApiParameter("volunteer", OpenApiTypes.STR, description="Only this volunteer's votes (curators)"),
        ],
    ),
    retrieve=extend_schema(summary="One vote"),
    create=extend_schema(
        summary="Vote on a galaxy's inclination",
        request=VoteCreateSerializer,
        responses={
            201: VoteSerializer,
            **ERROR_RESPONSES,
            403: OpenApiResponse(description="Not a volunteer"),
            404: OpenApiResponse(description="Unknown galaxy"),
            409: OpenApiResponse(description="Already voted, or the form was replayed"),
        },
    ),
)
class VoteViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Volunteers vote (zoo.voting.record_vote) and read their own votes; curators read all."""

    permission_classes = [IsVolunteer]
    queryset = InclinationVote.objects.none()  # for the schema; get_queryset answers requests
    pagination_class = KeysetPagination
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    serializer_class = VoteSerializer
    ordering_fields = ("created", "id", "inc")
    default_ordering = "-created"
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet:
        qs = InclinationVote.objects.select_related("user")
        user = self.request.user
        if not is_curator(user):
            qs = qs.filter(user=user)
        if self.action == "list":
            params = self.request.query_params
            if (pgc := pgc_param(params)) is not None:
                qs = qs.filter(galaxy_id=pgc)
            if params.get("volunteer"):
                qs = qs.filter(user__username=params["volunteer"])
        return qs

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = dict(_prototype(VoteCreateSerializer).run_validation(request.data))
        flags = {f: data.pop(f) for f in list(data) if f in GIZ_FLAGS}
        pgc = data.pop("pgc")
        try:
            vote = record_vote(request.user, pgc, data.pop("inc", None), flags=flags, source=InclinationVote.Source.API, **data)
        except RateLimited as exc:
            raise exceptions.Throttled(wait=exc.retry_after, detail=exc.message) from None
        except VoteError as exc:
            field = {"unknown_galaxy": "pgc", "replayed": "client_token"}.get(exc.code)
            if exc.code == "invalid":
                field = _vote_field(exc.message)
            raise ApiError(exc.message, status_code=exc.status, field=field, code=exc.code) from None
        return Response(_prototype(VoteSerializer).to_representation(vote), status=status.HTTP_201_CREATED)


@functools.cache
def _prototype(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """One instance of a serializer whose fields are built once and shared: validating input
    (run_validation) and writing output (to_representation) keep no state on it, so each vote
    skips building some forty fields."""
    return serializer_class()


def _vote_field(message: str) -> str | None:
    """The vote field a record_vote message is about (its messages start with or name it)."""
    text = message.lower()
    for name in ("client_token", "checkout_time", "std1", "std2", "note", "flag", "inc"):
        if name in text or (name == "inc" and "inclination" in text):
            return "flags" if name == "flag" else name
    return None


def routes() -> list[tuple[str, type, str]]:
    """(prefix, viewset, basename) of the zoo endpoints."""
    return [("votes", VoteViewSet, "vote")]


def galaxy_extras(galaxy, request=None) -> dict[str, Any]:
    """The galaxy detail's vote count and consensus inclination (GALCAT_GALAXY_API_EXTRAS)."""
    return {"vote_count": InclinationVote.objects.filter(galaxy=galaxy).count(), "consensus": current_consensus(galaxy)}
