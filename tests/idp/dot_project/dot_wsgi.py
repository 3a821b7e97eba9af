"""The gunicorn entry point: ``gunicorn dot_wsgi:application`` (DJANGO_SETTINGS_MODULE=dot_settings)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dot_settings")
application = get_wsgi_application()
