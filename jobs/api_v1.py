"""The jobs part of the API under /api/v1/ (registered by config/api.py): status and progress
of long operations, cancel and retry."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.errors import ApiError
from core.api.pagination import KeysetPagination
from core.roles import is_curator
from jobs import services
from jobs.models import Job


class JobSerializer(serializers.ModelSerializer):
    """A long operation and its progress."""

    id = serializers.IntegerField(read_only=True, help_text="Job id")
    owner = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None, help_text="Who started the job"
    )
    fraction = serializers.FloatField(read_only=True, allow_null=True, help_text="done / total, null while the total is unknown")

    class Meta:
        model = Job
        fields = (
            "id",
            "kind",
            "params",
            "status",
            "queue",
            "done",
            "total",
            "fraction",
            "message",
            "error",
            "log_tail",
            "result",
            "attempts",
            "cancel_requested",
            "owner",
            "created",
            "started",
            "finished",
            "heartbeat",
        )
        read_only_fields = fields


def _job_action(summary: str, conflict: str):
    """The schema of a POST action on one job that answers the job, or 409 with `conflict`."""
    return extend_schema(summary=summary, request=None, responses={200: JobSerializer, 409: OpenApiResponse(description=conflict)})


@extend_schema_view(
    list=extend_schema(
        summary="Jobs: one's own (curators: all)",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=list(Job.Status.values), description="Only jobs in this status"),
            OpenApiParameter("kind", OpenApiTypes.STR, description="Only jobs of this kind"),
        ],
    ),
    retrieve=extend_schema(summary="One job and its progress"),
)
class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Status and progress of long operations: one's own jobs; curators see every job."""

    permission_classes = [IsAuthenticated]
    queryset = Job.objects.none()  # for the schema; get_queryset answers requests
    pagination_class = KeysetPagination
    serializer_class = JobSerializer
    ordering_fields = ("created", "id", "status", "kind")
    default_ordering = "-created"
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet:
        qs = Job.objects.select_related("created_by")
        if not is_curator(self.request.user):
            qs = qs.filter(created_by=self.request.user)
        if self.action == "list":
            params = self.request.query_params
            if params.get("status"):
                if params["status"] not in Job.Status.values:
                    raise ApiError(f"unknown status {params['status']!r}; one of {', '.join(Job.Status.values)}", field="status")
                qs = qs.filter(status=params["status"])
            if params.get("kind"):
                qs = qs.filter(kind=params["kind"])
        return qs

    def _act(self, fn) -> Response:
        job = self.get_object()
        try:
            job = fn(job, user=self.request.user)
        except (PermissionError, DjangoPermissionDenied) as exc:
            raise exceptions.PermissionDenied(str(exc) or "not your job") from None
        except ValueError as exc:
            raise ApiError(str(exc), status_code=409) from None
        return Response(JobSerializer(job, context=self.get_serializer_context()).data)

    @_job_action("Cancel a job (owner or curator)", "Cannot be cancelled")
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._act(services.cancel_job)

    @_job_action("Retry a failed job (owner or curator)", "Cannot be retried")
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        return self._act(services.retry_job)


def routes() -> list[tuple[str, type, str]]:
    """(prefix, viewset, basename) of the jobs endpoints."""
    return [("jobs", JobViewSet, "job")]
