"""The demo's customers service (Django): validates the gateway's token; no database.

Serve it with ``gunicorn demo_django.wsgi:application``; configure it with ``TOKEN_MIDDLEWARE_*``
in the environment (see shared/DESIGN.md "Demo services").
"""
