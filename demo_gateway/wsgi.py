"""WSGI entry point of the demo gateway: ``gunicorn demo_gateway.wsgi:app``.

Configured only by ``GATEWAY_*`` environment variables (see ``token_middleware.gateway.config``);
``GATEWAY_USERS_FILE`` defaults to the demo's own ``users.json``. Every gunicorn worker imports
this module and builds its own app; the signing key in ``GATEWAY_KEYS_DIR`` is shared by all of
them (created once, under a file lock).
"""

from __future__ import annotations

import os

from token_middleware.gateway import GatewayConfig, create_app

from . import USERS_FILE

app = create_app(GatewayConfig.from_env(os.environ, default_users_file=USERS_FILE))
