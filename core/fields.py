"""Model fields several apps declare alike."""

from __future__ import annotations

from django.conf import settings
from django.db import models


def acting_user(verbose_name: str, help_text: str, *, related_name: str = "+", blank: bool = True) -> models.ForeignKey:
    """The user who did something (uploaded, created, opened, overrode): optional, and set to
    NULL when the account is deleted, so the row outlives it."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=blank,
        on_delete=models.SET_NULL,
        related_name=related_name,
        verbose_name=verbose_name,
        help_text=help_text,
    )
