from django.http import HttpRequest

from catalog.conf import conf


def site(request: HttpRequest) -> dict:
    # brand_name: auth's views put the request's host into `site_name`, so the header reads its own key.
    return {"site_name": conf.SITE_NAME, "brand_name": conf.SITE_NAME}
