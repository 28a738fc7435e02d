"""Account protections (failed-login throttling itself is core.login_throttle, which the API's
token endpoint shares):

- A new password (change, reset, admin) deletes the user's API token; other sessions end by
  themselves, since Django ties each session to the password hash.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

User = get_user_model()


@receiver(pre_save, sender=User)
def _note_password_change(sender, instance, raw: bool = False, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    old = User.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._password_changed = old is not None and old != instance.password


@receiver(post_save, sender=User)
def _revoke_tokens(sender, instance, **kwargs) -> None:
    if getattr(instance, "_password_changed", False):
        from rest_framework.authtoken.models import Token

        Token.objects.filter(user=instance).delete()
        instance._password_changed = False
