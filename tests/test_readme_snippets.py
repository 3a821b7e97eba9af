"""The README's Flask, Django, DRF and "Testing your views" sections work as written.

The code blocks are taken from README.md (each ``python`` or ``ini`` block that starts a line
and opens with a ``# <file name>`` comment; indented blocks inside lists are illustrations),
written into a fresh project directory and run with pytest in a subprocess, so the project's own
settings and already-configured frameworks cannot help them. The README's own test files run
through the token_middleware pytest plugin (and, for Django, pytest-django configured by the
README's ``pytest.ini``, nothing else); a small harness test adds the requests the README tests
do not make.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```(?:python|ini)\n(.*?)^```", re.S | re.M)


def section_files(name: str) -> dict[str, str]:
    """``{first-line file name: code}`` for the python blocks of one README section."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"<!-- section:{name} -->")
    end = text.index(f"<!-- /section:{name} -->")
    files: dict[str, str] = {}
    for code in _BLOCK.findall(text[start:end]):
        first = code.splitlines()[0]
        assert first.startswith("# "), f"README {name} block must start with '# <file>': {first!r}"
        filename = first[2:].split()[0]
        files[filename] = files.get(filename, "") + code
    return files


def run_pytest(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKEN_MIDDLEWARE_", "DJANGO_"))}
    env["PYTHONPATH"] = str(project)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio", "-W", "error", str(project)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


FLASK_HARNESS = '''
from token_middleware.testing import bearer


def test_other_readme_routes(client, make_token):
    token = make_token(sub="alice", scopes=["orders:write", "reports:read"])
    assert client.get("/orders/whoami", headers=bearer(token)).get_json() == {
        "sub": "alice", "client_id": "test-client", "scopes": ["orders:write", "reports:read"]}
    created = client.post("/orders", headers=bearer(token))
    assert created.status_code == 201 and created.get_json()["customer_id"] == "alice"
    assert client.get("/orders/report", headers=bearer(token)).status_code == 200
    assert client.get("/orders/report", headers=bearer(make_token(scopes=["x"]))).status_code == 403
'''


@pytest.mark.skipif(importlib.util.find_spec("flask") is None, reason="needs Flask")
@pytest.mark.skipif(importlib.util.find_spec("asgiref") is None, reason="the README's async view needs flask[async]")
def test_flask_and_testing_sections(tmp_path: Path) -> None:
    flask = section_files("flask")
    testing = section_files("testing")
    assert set(flask) == {"myapp.py"}
    (tmp_path / "myapp.py").write_text(flask["myapp.py"])
    (tmp_path / "conftest.py").write_text(testing["conftest.py"])
    (tmp_path / "test_orders.py").write_text(testing["test_orders.py"])
    (tmp_path / "test_harness.py").write_text(FLASK_HARNESS)
    run_pytest(tmp_path)


DJANGO_BASE_SETTINGS = '''
# What `django-admin startproject` writes, less the database (the README's views use none).
SECRET_KEY = "readme"
DEBUG = False
ALLOWED_HOSTS = []
ROOT_URLCONF = "customers.urls"
DATABASES = {}
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
'''

DJANGO_HARNESS = '''
import importlib.util

import pytest
from django.core.checks import run_checks
from django.test import Client

from token_middleware.testing import bearer, override_django_settings


def test_readme_settings_pass_the_system_checks():
    assert [m.id for m in run_checks() if m.id.startswith("token_middleware")] == []


@pytest.fixture(autouse=True)
def token_settings(token_issuer):
    with override_django_settings(token_issuer, AUDIENCE="customers-service"):
        yield


def test_other_readme_views(make_token):
    token = make_token(sub="alice", scopes=["customers:read"], audience="customers-service")
    client = Client()
    assert client.get("/customers/whoami", headers=bearer(token)).json() == {
        "sub": "alice", "client_id": "test-client", "scopes": ["customers:read"], "user": "alice"}
    assert client.get("/customers/7/orders", headers=bearer(token)).status_code == 200
    notes = client.get("/customers/7/notes", headers=bearer(token))
    assert notes.status_code == 403
    assert notes.headers["WWW-Authenticate"].endswith('scope="customers:read notes:read"')
    assert client.get("/customers/7/notes").headers["WWW-Authenticate"] == 'Bearer realm="customers-service"'


def test_readme_drf_views(make_token):
    client = Client()
    token = make_token(sub="alice", scopes=["customers:read"], audience="customers-service")
    assert client.get("/api/customers/7", headers=bearer(token)).json() == {"id": 7, "sub": "alice", "user": "alice"}
    assert client.get("/api/customers/7").headers["WWW-Authenticate"] == 'Bearer realm="customers-service"'
    denied = client.get("/api/customers/7", headers=bearer(make_token(audience="customers-service")))
    assert denied.status_code == 403
    assert denied.headers["WWW-Authenticate"].endswith('error="insufficient_scope", '
                                                       'error_description="required scope: customers:read", '
                                                       'scope="customers:read"')
    admin = make_token(scopes=["customers:admin"], audience="customers-service")
    assert client.get("/api/customers/7/admin", headers=bearer(admin)).status_code == 200
    composed = client.get("/api/customers/7/admin", headers=bearer(token))
    assert composed.status_code == 403 and "WWW-Authenticate" not in composed.headers


def test_readme_drf_view_in_a_browser(make_token):
    token = make_token(scopes=["customers:read"], audience="customers-service")
    page = Client().get("/api/customers/7", headers={**bearer(token), "Accept": "text/html"})
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert b"Customer Api" in page.content  # DRF's browsable API, from rest_framework's templates
'''


@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="needs Django")
@pytest.mark.skipif(importlib.util.find_spec("rest_framework") is None, reason="needs DRF")
@pytest.mark.skipif(importlib.util.find_spec("pytest_django") is None, reason="the README's Django tests use pytest-django")
def test_django_drf_and_testing_sections(tmp_path: Path) -> None:
    django = section_files("django")
    drf = section_files("drf")
    testing = section_files("testing")
    assert set(django) == {"settings.py", "customers/views.py", "customers/urls.py"}
    assert set(drf) == {"settings.py", "customers/api.py", "customers/urls.py"}
    (tmp_path / "settings.py").write_text(DJANGO_BASE_SETTINGS + django["settings.py"] + drf["settings.py"])
    package = tmp_path / "customers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "views.py").write_text(django["customers/views.py"])
    (package / "urls.py").write_text(django["customers/urls.py"] + "\n" + drf["customers/urls.py"])
    (package / "api.py").write_text(drf["customers/api.py"])
    (tmp_path / "pytest.ini").write_text(testing["pytest.ini"])
    (tmp_path / "test_customers.py").write_text(testing["test_customers.py"])
    (tmp_path / "test_harness.py").write_text(textwrap.dedent(DJANGO_HARNESS))
    run_pytest(tmp_path)
