"""WSGI entry point of the customers service: ``gunicorn demo_django.wsgi:application``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_django.settings")

application = get_wsgi_application()
