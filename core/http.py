"""Helpers of the HTML views shared by the apps."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme


def redirect_to_next(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Redirect to the POSTed `next` when it is a URL of this site, else to `fallback`.

    `next` must stay on the request's host, with scheme http(s) (https when the request is
    secure), and name an absolute path ("/galaxies/?q=1", or a full URL of this host); anything
    else (another site, javascript:, a relative or malformed value) goes to `fallback`. `next`
    is used as a URL, never resolved as a view name, so no value of it can raise.
    """
    target = request.POST.get("next", "")
    if not _is_site_url(target, request):
        target = fallback
    return HttpResponseRedirect(target)


def _is_site_url(url: str, request: HttpRequest) -> bool:
    if not url or not url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return False
    try:
        return urlsplit(url).path.startswith("/")
    except ValueError:  # e.g. an unbalanced "[" in the netloc
        return False
