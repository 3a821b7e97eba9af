"""HostAllowlist: the exact host-and-port rule every outgoing client shares; AllowlistSource:
which allowlist a client applies on a call (the one given by hand, the current settings', or
the environment's)."""

from __future__ import annotations

import pytest

from token_middleware.core.context import bind_token, reset_token
from token_middleware.core.errors import ConfigurationError
from token_middleware.core.forwarding import AllowlistSource, HostAllowlist
from token_middleware.core.settings import Settings

ENTRIES = ["customers", "orders.internal:8001", "Billing.Example", "127.0.0.1:8002", "[::1]:9000", "[fe80::1]"]

PERMITS = [
    # (url, expected)
    ("http://customers/x", True),
    ("https://customers/x", True),
    ("http://customers:80/x", True),
    ("https://customers:443/", True),
    ("http://customers:443/", False),
    ("https://customers:80/", False),
    ("http://customers:8002/", False),
    ("http://CUSTOMERS/x", True),
    ("http://orders.internal:8001/orders", True),
    ("https://orders.internal:8001/orders", True),
    ("http://orders.internal/orders", False),
    ("http://orders.internal:8002/orders", False),
    ("https://billing.example/", True),
    ("http://127.0.0.1:8002/customers/whoami", True),
    ("http://127.0.0.1:8003/", False),
    ("http://127.0.0.1/", False),
    ("http://[::1]:9000/", True),
    ("http://[0:0::1]:9000/", True),
    ("http://[::1]:9001/", False),
    ("http://[fe80::1]/", True),
    ("http://[FE80::1]/", True),
    ("http://evil.customers/", False),
    ("http://customers.evil/", False),
    ("http://xcustomers/", False),
    ("http://customers./", False),
    ("http://customers@evil.example/", False),
    ("http://user:pw@customers/", True),
    ("http://evil.example#@customers/", False),
    ("http://evil.example?@customers/", False),
    ("http://evil.example\\@customers/", False),
    ("http://cust omers/", False),
    ("http://customers\t/", False),
    ("http://cust%6fmers/", False),
    ("http://customers:99999/", False),
    ("http://customers:abc/", False),
    ("ftp://customers/", False),
    ("ws://customers/", False),
    ("//customers/x", False),
    ("customers", False),
    ("/relative/path", False),
    ("", False),
]


@pytest.mark.parametrize(("url", "expected"), PERMITS, ids=[u or "<empty>" for u, _ in PERMITS])
def test_permits(url: str, expected: bool) -> None:
    assert HostAllowlist(ENTRIES).permits(url) is expected


def test_empty_allowlist_permits_nothing() -> None:
    allow = HostAllowlist([])
    assert not allow
    assert not allow.permits("http://127.0.0.1/")
    assert not HostAllowlist.from_env({}).permits("http://127.0.0.1/")


BAD_ENTRIES = [
    ("http://customers", "scheme"),
    ("customers/path", "path"),
    ("user@customers", "userinfo"),
    ("*.example", "wildcard"),
    ("customers:0", "port zero"),
    ("customers:65536", "port too large"),
    ("customers:http", "port not a number"),
    ("::1", "bare ipv6"),
    ("[::1", "unclosed bracket"),
    ("[not-an-ip]:80", "brackets without ipv6"),
    ("cust omers", "space"),
]


@pytest.mark.parametrize("entry", [e for e, _ in BAD_ENTRIES], ids=[i for _, i in BAD_ENTRIES])
def test_invalid_entries_are_refused(entry: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        HostAllowlist([entry])
    assert info.value.setting == "FORWARD_TO"


def test_string_is_not_an_iterable_of_entries() -> None:
    with pytest.raises(TypeError):
        HostAllowlist("customers")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("forward_to", "environ", "entries"),
    [
        (None, {"TOKEN_MIDDLEWARE_FORWARD_TO": "customers:8002, Orders"}, ("customers:8002", "orders")),
        (None, {}, ()),
        (None, {"TOKEN_MIDDLEWARE_FORWARD_TO": ""}, ()),
        ("a, b:81,", {"TOKEN_MIDDLEWARE_FORWARD_TO": "ignored"}, ("a", "b:81")),
        (["A", "a", "[::1]:80"], {}, ("a", "[::1]:80")),
    ],
    ids=["env", "env-unset", "env-empty", "comma-string", "list-deduplicated"],
)
def test_coerce(
    forward_to: str | list[str] | None,
    environ: dict[str, str],
    entries: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOKEN_MIDDLEWARE_FORWARD_TO", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert HostAllowlist.coerce(forward_to).entries == entries


def test_coerce_keeps_an_allowlist_and_equality_ignores_order() -> None:
    allow = HostAllowlist(["a", "b:1"])
    assert HostAllowlist.coerce(allow) is allow
    assert HostAllowlist(["b:1", "A"]) == allow
    assert HostAllowlist(["a"]) != allow


def _settings(forward_to: str) -> Settings:
    return Settings.from_mapping({"ISSUER": "https://issuer.test", "AUDIENCE": "svc", "FORWARD_TO": forward_to})


def test_source_by_hand_wins_over_the_settings_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", "from-env")
    source = AllowlistSource(["by-hand:1"])
    handle = bind_token(None, _settings("from-settings"))
    try:
        assert source.current() == HostAllowlist(["by-hand:1"])
    finally:
        reset_token(handle)
    assert source.current() == HostAllowlist(["by-hand:1"])


def test_source_none_uses_the_bound_settings_else_the_environment_read_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", "from-env")
    source = AllowlistSource(None)
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", "changed-later")
    assert source.current() == HostAllowlist(["from-env"])
    settings = _settings("from-settings:8002")
    handle = bind_token(None, settings)
    try:
        assert source.current() is settings.allowlist  # the settings' parsed list, not a new one
    finally:
        reset_token(handle)
    assert source.current() == HostAllowlist(["from-env"])


def test_source_equality_is_what_instrument_compares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", "a")
    assert AllowlistSource(None) == AllowlistSource(None)
    assert AllowlistSource(["A"]) == AllowlistSource("a")
    assert AllowlistSource(None) != AllowlistSource(["a"])  # by hand is not "the settings"
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", "b")
    assert AllowlistSource(None) != AllowlistSource(AllowlistSource(["a"]))
    assert "current settings" in repr(AllowlistSource(None))
