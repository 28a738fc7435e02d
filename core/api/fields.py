"""Serializer fields of the API that are stricter than DRF's own."""

from __future__ import annotations

from rest_framework import serializers


class _NoBool:
    """Refuses JSON true/false where a number is expected (DRF reads them as 1 and 0)."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class NumberField(_NoBool, serializers.FloatField):
    """A float; true/false are refused, not stored as 1.0/0.0."""


class IntField(_NoBool, serializers.IntegerField):
    """An integer; true/false are refused, not stored as 1/0."""
