"""ASGI entry point of the test project: ``uvicorn tm_django_asgi:application --app-dir tests/django``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tm_django_settings")

application = get_asgi_application()
