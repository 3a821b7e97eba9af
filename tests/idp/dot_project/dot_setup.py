"""Create the database and two confidential client-credentials applications.

``python dot_setup.py <client_id>=<secret> ...``: ``orders-service`` is the resource server
(it authenticates at the introspection endpoint), the others are callers that get tokens.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dot_settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from oauth2_provider.models import get_application_model  # noqa: E402

call_command("migrate", verbosity=0, interactive=False)
Application = get_application_model()
for pair in sys.argv[1:]:
    client_id, secret = pair.split("=", 1)
    Application.objects.create(
        name=client_id,
        client_id=client_id,
        client_secret=secret,  # django-oauth-toolkit stores a hash of it
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
print("ok")
