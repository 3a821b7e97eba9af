"""WSGI entry point of the test project: ``gunicorn --chdir tests/django tm_django_wsgi:application``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tm_django_settings")

application = get_wsgi_application()
