"""Stored files (/media/) through an access check: private images only for members.

An image file is served to anyone when some public Image row stores it (files are stored by
content, so equal bytes are one file) and to members when any Image row does; the folders in
GALCAT_MEDIA_PUBLIC_PREFIXES (rendered zoo standards) are public; every other path answers 404,
the same answer as a file that does not exist, so the check tells an outsider nothing.

Behind a front server, GALCAT_MEDIA_ACCEL_REDIRECT (e.g. "/protected-media/", an nginx
`internal` location aliasing MEDIA_ROOT) hands the bytes over with X-Accel-Redirect after the
same check; unset, Django streams the file itself.
"""

from __future__ import annotations

import mimetypes
import posixpath
from urllib.parse import quote

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control
from django.views.static import serve

from catalog.conf import conf
from catalog.models import Image
from core.roles import is_member


def _clean(path: str) -> str | None:
    """The stored name for a URL path, or None for anything that leaves MEDIA_ROOT."""
    if "\x00" in path or "\\" in path:
        return None
    name = posixpath.normpath(path).lstrip("/")
    if name in ("", ".") or name.startswith("..") or "/../" in f"/{name}/":
        return None
    return name


def file_visibility(user, name: str) -> str | None:
    """'public', 'private' (members only) or None (not for `user`) for the stored file `name`."""
    if any(name.startswith(prefix) for prefix in conf.MEDIA_PUBLIC_PREFIXES):
        return "public"
    rows = Image.objects.filter(file=name)
    if rows.filter(is_public=True).exists():
        return "public"
    if is_member(user) and rows.exists():
        return "private"
    return None


def media_view(request: HttpRequest, path: str) -> HttpResponse:
    name = _clean(path)
    visibility = file_visibility(request.user, name) if name else None
    if visibility is None:
        raise Http404("no such file")
    if conf.MEDIA_ACCEL_REDIRECT:
        response = HttpResponse(content_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
        response["X-Accel-Redirect"] = conf.MEDIA_ACCEL_REDIRECT.rstrip("/") + "/" + quote(name)
    else:
        response = serve(request, name, document_root=settings.MEDIA_ROOT)
    if visibility == "private":
        patch_cache_control(response, private=True)
        response["Vary"] = "Cookie, Authorization"
    return response
