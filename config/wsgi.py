import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from config.checks import require_real_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
require_real_secret_key(settings.DEBUG, settings.SECRET_KEY)  # refuse to serve with the public key
