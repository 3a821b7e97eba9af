"""Start-up as a Django user meets it, in real subprocesses of the test project.

``manage.py check`` reports bad settings as ``token_middleware.E00x`` checks, never a traceback
from ``ready()``; ``collectstatic`` (an image build without the runtime environment) does not
look at them; gunicorn refuses to start with the message that names the fix, and starts and
answers with good settings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from demo_gateway.supervisor import free_port, start_process, wait_until_answers
from token_middleware.testing import bearer

PROJECT_DIR = Path(__file__).parent
needs_gunicorn = pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None,
                                    reason="gunicorn is in the demo extra (./run test has it)")
BAD = {"AUDIENCE": "svc"}  # ISSUER comes from the runtime environment, which is not there


def project_env(token_middleware: Mapping[str, Any], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKEN_MIDDLEWARE_", "DJANGO_", "TM_TEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TM_TEST_TOKEN_MIDDLEWARE"] = json.dumps(token_middleware)
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env=env,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )


def test_check_reports_bad_settings_as_a_check() -> None:
    result = manage("check", env=project_env(BAD))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "?: (token_middleware.E002) TOKEN_MIDDLEWARE is invalid: ISSUER is required" in result.stderr
    assert 'HINT: Fix TOKEN_MIDDLEWARE["ISSUER"] in your settings' in result.stderr


def test_check_passes_with_good_settings(token_issuer: Any) -> None:
    result = manage("check", "--fail-level", "WARNING", env=project_env(token_issuer.settings()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_collectstatic_does_not_need_the_runtime_settings(tmp_path: Path) -> None:
    result = manage("collectstatic", "--noinput", env=project_env(BAD, TM_TEST_STATIC_ROOT=str(tmp_path / "static")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "static files copied" in result.stdout


def test_migrate_reports_the_check_and_runs_with_skip_checks(tmp_path: Path) -> None:
    env = project_env(BAD, TM_TEST_DB=str(tmp_path / "db.sqlite3"))
    refused = manage("migrate", "--noinput", env=env)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert "(token_middleware.E002)" in refused.stderr
    migrated = manage("migrate", "--noinput", "--skip-checks", env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "Applying auth.0001_initial... OK" in migrated.stdout


def gunicorn_argv(port: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
        "--chdir", str(PROJECT_DIR), "tm_django_wsgi:application",
    ]


@needs_gunicorn
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param(BAD, 'ISSUER is required', id="missing-issuer"),
        pytest.param({"ISSUER": "https://i.test", "AUDIENCE": "svc", "JWKS_URL": "https://i.test/jwks",
                      "USER_LOADER": "myapp.nowhere.load_user"},
                     "USER_LOADER: cannot import 'myapp.nowhere.load_user'", id="bad-dotted-path"),
    ],
)
def test_gunicorn_refuses_to_start_with_bad_settings(setting: dict[str, str], message: str) -> None:
    result = subprocess.run(
        gunicorn_argv(free_port()), env=project_env(setting), capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: token_middleware: " + message in result.stderr
    assert "-- fix settings.TOKEN_MIDDLEWARE[" in result.stderr


@needs_gunicorn
def test_gunicorn_starts_and_answers_with_good_settings(token_issuer: Any, make_token: Any, tmp_path: Path) -> None:
    port = free_port()
    process = start_process("gunicorn", gunicorn_argv(port), env=project_env(token_issuer.settings()),
                            log_dir=tmp_path, cwd=PROJECT_DIR)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_answers(f"{base}/public", process=process) == 200
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
        request = urllib.request.Request(f"{base}/token", headers=bearer(make_token(sub="ivy")))
        with opener.open(request, timeout=10) as answer:
            assert answer.status == 200
            assert json.load(answer)["context_sub"] == "ivy"
    finally:
        process.stop()
    assert process.popen.returncode == 0, process.log_tail()
