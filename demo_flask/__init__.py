"""The demo's orders service (Flask): validates the gateway's token and calls the customers service.

Serve it with ``gunicorn demo_flask.wsgi:app``; configure it with ``TOKEN_MIDDLEWARE_*`` and
``CUSTOMERS_URL`` in the environment (see shared/DESIGN.md "Demo services").
"""
