import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from config.checks import require_real_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
require_real_secret_key(settings.DEBUG, settings.SECRET_KEY)  # refuse to serve with the public key
# Import every view now, while the worker boots and before it accepts connections, rather than in
# its first request: that took 0.25 s on a quiet machine and about 1 s when three new workers did it
# at once under load, holding up every client that reached them meanwhile (bench/load_bench.py:
# the votes p99 at 50 keep-alive clients was these first requests).
get_resolver().url_patterns  # noqa: B018 (reading the attribute imports the URLconf and views)
