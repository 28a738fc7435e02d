from django.http import HttpRequest

from catalog.conf import conf


def site(request: HttpRequest) -> dict:
    return {"site_name": conf.SITE_NAME}
