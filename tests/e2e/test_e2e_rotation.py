"""Key rotation at the gateway: the running services accept tokens signed with the new key
without a restart (they refetch the JWKS on an unknown ``kid``), and tokens signed with the
previous key stay valid until they expire (the previous public key stays in the JWKS).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from token_middleware.cli import main
from demo_gateway.supervisor import DemoStack

pytestmark = pytest.mark.e2e


def test_services_accept_tokens_from_a_rotated_key_without_a_restart(
    stack: DemoStack,
    keys_dir: Path,
    mint_at_gateway: Any,
    decode_header: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old_token = mint_at_gateway(stack, "alice")
    # One audience per route (exchange mode): the customers service needs a token of its own.
    old_customers_token = mint_at_gateway(stack, "alice", "/customers/whoami")
    old_kid = decode_header(old_token)["kid"]
    pids = [p.popen.pid for p in stack.processes]

    assert main(["rotate-keys", "--keys-dir", str(keys_dir)]) == 0
    assert "new kid" in capsys.readouterr().out

    # The gateway's workers notice the rotation on disk within about a second.
    deadline = time.monotonic() + 20
    new_token = old_token
    while decode_header(new_token)["kid"] == old_kid and time.monotonic() < deadline:
        time.sleep(0.3)
        new_token = mint_at_gateway(stack, "alice", "/orders/chain")
    assert decode_header(new_token)["kid"] != old_kid, "the gateway kept signing with the old key"

    jwks = requests.get(f"{stack.gateway_url}/.well-known/jwks.json", timeout=10).json()
    assert {old_kid, decode_header(new_token)["kid"]} <= {k["kid"] for k in jwks["keys"]}

    new_customers_token = mint_at_gateway(stack, "alice", "/customers/whoami")
    while decode_header(new_customers_token)["kid"] == old_kid and time.monotonic() < deadline:
        time.sleep(0.3)  # every gateway worker notices the rotation (as above)
        new_customers_token = mint_at_gateway(stack, "alice", "/customers/whoami")
    assert decode_header(new_customers_token)["kid"] != old_kid
    for base, path, tokens in [(stack.orders_url, "/orders/chain", (new_token, old_token)),
                               (stack.customers_url, "/customers/whoami", (new_customers_token, old_customers_token))]:
        for token in tokens:
            r = requests.get(f"{base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert r.status_code == 200, (path, r.status_code, r.headers.get("WWW-Authenticate"))
    through_gateway = requests.get(f"{stack.gateway_url}/orders/chain", auth=("bob", "bob-password"), timeout=10)
    assert through_gateway.status_code == 200
    assert through_gateway.json()["customers"]["sub"] == "bob"
    assert [p.popen.pid for p in stack.processes] == pids
    assert all(p.running() for p in stack.processes)
