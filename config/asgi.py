import os

from django.conf import settings
from django.core.asgi import get_asgi_application

from config.checks import require_real_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()
require_real_secret_key(settings.DEBUG, settings.SECRET_KEY)  # refuse to serve with the public key
