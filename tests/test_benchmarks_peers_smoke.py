"""Figure ``peers`` (issue 16): its apps do the same work, and ``--only peers`` runs to the end.

No timing is asserted. The unit tests drive every peer app in process (Flask's test client;
Django's in a subprocess, with the peers' own settings module) against a real JWKS server on
loopback; the smoke test runs the figure under gunicorn and wrk with one short round.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import peers
from benchmarks._common import AUDIENCE, ISSUER
from token_middleware.testing.servers import LoopbackJWKS

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(bool(peers.missing_peers()), reason=f"peers not installed: {peers.PIP}")

FLASK_PEERS = ("project", "flask_jwt_ext", "pyjwt_app", "authlib_app")
DRF_PEERS = ("project", "simplejwt")


@pytest.fixture(scope="module")
def tokens() -> peers.Tokens:
    return peers.Tokens.create()


@pytest.fixture(scope="module")
def jwks(tokens: peers.Tokens) -> Iterator[LoopbackJWKS]:
    with LoopbackJWKS([tokens.key], issuer=ISSUER) as server:
        yield server


@pytest.fixture(scope="module")
def config(tokens: peers.Tokens, jwks: LoopbackJWKS, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    pem = tmp_path_factory.mktemp("peers") / "public.pem"
    pem.write_bytes(tokens.key.public_pem())
    return {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": jwks.jwks_url, "public_key_file": str(pem)}


def flask_get(module: str, config: dict[str, str], token: str) -> tuple[int, Any]:
    app = __import__(f"benchmarks.peer_apps.{module}", fromlist=["create_app"]).create_app(**config)
    response = app.test_client().get("/orders/whoami", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.get_json(silent=True)


@pytest.mark.parametrize("module", FLASK_PEERS)
def test_flask_peer_accepts_the_token_and_refuses_the_others(
    module: str, config: dict[str, str], tokens: peers.Tokens
) -> None:
    status, body = flask_get(module, config, tokens.good)
    assert status == 200
    assert body == flask_get("bare", config, tokens.good)[1] == {
        "sub": "alice", "scopes": ["customers:read", "orders:read", "orders:write"]}
    for what, token in tokens.refused().items():
        assert flask_get(module, config, token)[0] == 401, what


def test_jwks_fetching_apps_fetch_over_http(config: dict[str, str], tokens: peers.Tokens, jwks: LoopbackJWKS) -> None:
    before = jwks.requests.get("/jwks", 0)
    for module in ("project", "pyjwt_app", "authlib_app"):
        assert flask_get(module, config, tokens.good)[0] == 200
    assert jwks.requests.get("/jwks", 0) >= before + 3


DRF_SCRIPT = textwrap.dedent("""
    import json, sys
    import django
    django.setup()
    from django.test import Client
    from django.test.utils import override_settings
    tokens = json.loads(sys.stdin.read())
    out = {}
    for app in ("bare", "project", "simplejwt"):
        with override_settings(ROOT_URLCONF=f"benchmarks.peer_apps.drf_{app}"):
            client = Client()
            answers = {}
            for what, token in tokens.items():
                response = client.get("/orders/whoami", HTTP_AUTHORIZATION=f"Bearer {token}")
                answers[what] = [response.status_code, response.json() if response.status_code == 200 else None]
            out[app] = answers
    print(json.dumps(out))
""")


def test_drf_peers_accept_the_token_and_refuse_the_others(config: dict[str, str], tokens: peers.Tokens) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TOKEN_MIDDLEWARE_", "PEER_"))}
    env.update(DJANGO_SETTINGS_MODULE="benchmarks.peer_apps.django_settings", PYTHONPATH=str(ROOT),
               PEER_ISSUER=config["issuer"], PEER_AUDIENCE=config["audience"], PEER_JWKS_URL=config["jwks_url"],
               PEER_PUBLIC_KEY_FILE=config["public_key_file"])
    done = subprocess.run([sys.executable, "-c", DRF_SCRIPT], input=json.dumps({"good": tokens.good, **tokens.refused()}),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {"sub": "alice", "scopes": ["customers:read", "orders:read", "orders:write"]}
    for app in ("bare", *DRF_PEERS):
        assert out[app]["good"] == [200, expected], app
    for app in DRF_PEERS:
        for what in tokens.refused():
            assert out[app][what][0] == 401, (app, what)


def test_cycling_script_is_private_and_holds_no_token(tmp_path: Path, tokens: peers.Tokens) -> None:
    script = peers.cycling_script(tmp_path, [tokens.good, tokens.wrong_audience], "two")
    assert script.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "two.tokens").stat().st_mode & 0o777 == 0o600
    assert "eyJ" not in script.read_text() and "function request()" in script.read_text()
    with pytest.raises(ValueError):
        peers.cycling_script(tmp_path, ['x"; os.exit() --'], "bad")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_peers_figure_runs(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--rounds", "1", "--duration", "1", "--only", "peers",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "crashed" not in done.stdout and "skipped" not in done.stdout
    assert "eyJ" not in done.stdout + done.stderr
    names = [row["name"] for row in json.loads(out.read_text())["rows"]]
    for label in ("same token", "100 tokens", "1,000 tokens"):
        assert f"{label}: project / best peer" in names
        assert f"{label}: project / bare Flask" in names
        for peer in ("flask-jwt-extended", "PyJWT + PyJWKClient", "Authlib RFC 9068"):
            assert f"{label}: {peer} / bare Flask" in names
        assert f"DRF, {label}: project DRF / simplejwt" in names
        assert f"DRF, {label}: project DRF / bare DRF" in names
        assert f"DRF, {label}: simplejwt / bare DRF" in names
        assert f"{label}: non-2xx (+ socket errors), all apps" in names
