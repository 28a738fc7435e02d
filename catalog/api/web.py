"""Token management from the profile page (templates/accounts/_token.html posts here)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from catalog.api.tokens import issue_token, revoke_token


def _back(request: HttpRequest) -> HttpResponseRedirect:
    target = request.POST.get("next") or request.META.get("HTTP_REFERER") or "/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = "/"
    return HttpResponseRedirect(target)


@login_required
@require_POST
def token_issue(request: HttpRequest) -> HttpResponseRedirect:
    issue_token(request.user)
    messages.success(request, "A new API token was issued; any previous token no longer works.")
    return _back(request)


@login_required
@require_POST
def token_revoke(request: HttpRequest) -> HttpResponseRedirect:
    if revoke_token(request.user):
        messages.success(request, "Your API token was revoked.")
    else:
        messages.info(request, "You had no API token.")
    return _back(request)
