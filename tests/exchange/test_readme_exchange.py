"""The README's "Per-hop token exchange" section works as written, against the loopback endpoint.

Its ``orders.py`` block runs with the gateway's URL and the customers host replaced by the test
servers' (nothing else changes): a request through it reaches the downstream with a token
exchanged for ``customers-service``, and a failed exchange answers 502 with nothing sent. Its
Django block is executed too (the decorators exist and apply).
"""

from __future__ import annotations

import importlib.util
import os
import re
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.validator import TokenValidator
from token_middleware.testing import bearer

from _exchange_support import CUSTOMERS, ORDERS, SECRET

if TYPE_CHECKING:
    from _endpoint import TokenEndpoint
    from _exchange_support import Downstream

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("<!-- section:exchange -->"):text.index("<!-- /section:exchange -->")]
    return {code.splitlines()[0][2:].split()[0]: code for code in _BLOCK.findall(section)}


def load(name: str, code: str) -> Any:
    module = types.ModuleType(name)
    exec(compile(code, f"README.md:{name}", "exec"), module.__dict__)  # noqa: S102 - our own README
    return module


def test_the_section_has_the_blocks_it_promises() -> None:
    assert set(blocks()) == {"orders.py", "customers/views.py"}


def test_the_orders_block_exchanges_and_fails_closed(
    endpoint: TokenEndpoint, downstream: Downstream, signing_key: SigningKey,
    customers_validator: TokenValidator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("TOKEN_MIDDLEWARE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ORDERS_CLIENT_SECRET", SECRET)
    code = blocks()["orders.py"].replace("http://127.0.0.1:8000", endpoint.issuer)
    code = code.replace("127.0.0.1:8002", downstream.netloc)
    client = load("orders", code).app.test_client()
    token = TokenIssuer(endpoint.issuer, signing_key).mint(sub="alice", audience=ORDERS, scopes=["customers:read"])

    answer = client.get("/orders/chain", headers=bearer(token))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    seen = answer.get_json()["customers"]["authorization"]
    received = customers_validator.validate(seen[7:])
    assert (received.subject, received.audience, received.actors) == ("alice", (CUSTOMERS,), (ORDERS,))
    assert answer.get_json()["orders"] == {"sub": "alice", "aud": [ORDERS]}
    answer.close()  # as a WSGI server does: the extension resets the token context on close

    endpoint.answer_with(400, {"error": "invalid_target"})
    other = TokenIssuer(endpoint.issuer, signing_key).mint(sub="bob", audience=ORDERS)
    failed = client.get("/orders/chain", headers=bearer(other))
    assert failed.status_code == 502
    assert "invalid_target" in failed.get_json()["error_description"]
    failed.close()
    assert len(downstream.seen) == 1  # only alice's call went out


@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="needs Django")
def test_the_django_block_applies_its_decorators() -> None:
    views = load("customers_views", blocks()["customers/views.py"])
    assert callable(views.customer) and views.customer.__name__ == "customer"
