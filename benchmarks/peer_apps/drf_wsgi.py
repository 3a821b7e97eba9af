"""WSGI entry point of the DRF apps: ``gunicorn benchmarks.peer_apps.drf_wsgi:application``
with ``PEER_DRF_APP`` = ``bare``, ``project`` or ``simplejwt``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.peer_apps.django_settings")
application = get_wsgi_application()
