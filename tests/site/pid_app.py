"""A WSGI application for the web-worker tests: answers with the pid of the process that served
the request, after GALCAT_TEST_APP_DELAY seconds (default 0.3), so concurrent requests overlap."""

import os
import time

DELAY = float(os.environ.get("GALCAT_TEST_APP_DELAY", "0.3"))


def application(environ, start_response):
    time.sleep(DELAY)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
