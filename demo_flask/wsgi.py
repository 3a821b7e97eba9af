"""WSGI entry point of the orders service: ``gunicorn demo_flask.wsgi:app``."""

from __future__ import annotations

from .app import create_app

app = create_app()
