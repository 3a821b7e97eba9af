"""The demo's gateway: :mod:`token_middleware.gateway` configured from ``GATEWAY_*`` variables.

Demo users (``users.json``; passwords documented on purpose, never use them elsewhere):

========= ================== ==========================================
user      password           scopes
========= ================== ==========================================
``alice`` ``alice-password`` ``orders:read customers:read`` (read only)
``bob``   ``bob-password``   ``orders:read orders:write customers:read``
========= ================== ==========================================

Run with ``gunicorn demo_gateway.wsgi:app``.
"""

from __future__ import annotations

from pathlib import Path

#: The demo's users file, the default of ``GATEWAY_USERS_FILE``.
USERS_FILE = Path(__file__).resolve().parent / "users.json"
