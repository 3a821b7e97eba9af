"""Configuration of exchange: FORWARD_TO entries naming an audience, CLIENT_ID/CLIENT_SECRET and
TOKEN_ENDPOINT, checked at start-up with messages that name the fix; the secret stays hidden."""

from __future__ import annotations

from typing import Any

import pytest

from token_middleware.core.errors import ConfigurationError
from token_middleware.core.hosts import HostAllowlist, HostEntry, parse_entry
from token_middleware.core.settings import Settings

BASE = {"ISSUER": "https://gateway.test", "AUDIENCE": "orders-service"}
CREDENTIAL = {"CLIENT_ID": "orders-service", "CLIENT_SECRET": "s3cret-value"}

ENTRIES = [
    ("customers:8002=customers-service", HostEntry("customers", 8002, "customers-service")),
    (" Customers:8002 = customers-service ", HostEntry("customers", 8002, "customers-service")),
    ("[::1]:8002=https://customers.example/api", HostEntry("::1", 8002, "https://customers.example/api")),
    ("billing=urn:billing", HostEntry("billing", None, "urn:billing")),
    ("customers:8002", HostEntry("customers", 8002, None)),
]


@pytest.mark.parametrize(("raw", "entry"), ENTRIES, ids=[e[0].strip() for e in ENTRIES])
def test_entries_may_name_an_audience(raw: str, entry: HostEntry) -> None:
    assert parse_entry(raw) == entry
    assert parse_entry(str(entry)) == entry  # the normalised form parses back


BAD = [
    ("customers:8002=", "names no audience"),
    ("customers:8002= ", "names no audience"),
    ("customers:8002=a b", "one word or URI"),
    ("customers:8002=a\tb", "one word or URI"),
    ("http://customers:8002=customers-service", "write 'customers:8002=customers-service'"),
    ("customers:0=customers-service", "port outside"),
    ("=customers-service", "'host' or 'host:port'"),
]


@pytest.mark.parametrize(("raw", "fix"), BAD, ids=[b[0] for b in BAD])
def test_bad_entries_fail_naming_the_fix(raw: str, fix: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        HostAllowlist([raw])
    assert fix in str(info.value)
    assert info.value.setting == "FORWARD_TO"


@pytest.mark.parametrize(
    "entries",
    [["c:1=a", "c:1=b"], ["c:1=a", "c:1"], ["c=a", "c:80=b"], ["c", "c:443=a"]],
    ids=["two-audiences", "with-and-without", "default-port-twice", "default-port-https"],
)
def test_one_host_has_one_meaning(entries: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        HostAllowlist(entries)


def test_the_allowlist_says_which_audience_a_destination_gets() -> None:
    allow = HostAllowlist(["customers:8002=customers-service", "billing", "c:1=a", "c:1=a"])
    assert allow.entries == ("customers:8002=customers-service", "billing", "c:1=a")
    assert allow.audiences == frozenset({"customers-service", "a"})
    assert allow.entry_for(("http", "customers", 8002)) == HostEntry("customers", 8002, "customers-service")
    assert allow.entry_for(("https", "billing", 443)) == HostEntry("billing", None, None)
    assert allow.entry_for(("http", "customers", 8003)) is None
    assert allow.permits("http://customers:8002/x") and not allow.permits("http://customers/x")
    assert HostAllowlist(["c:1=a"]) != HostAllowlist(["c:1=b"]) != HostAllowlist(["c:1"])
    assert len({HostAllowlist(["c:1=a", "d"]), HostAllowlist(["d", "c:1=a"])}) == 1


def test_an_audience_entry_needs_the_client_credential() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_mapping({**BASE, "FORWARD_TO": "customers:8002=customers-service"})
    assert "set CLIENT_ID and CLIENT_SECRET" in str(info.value)
    assert "drop '=customers-service'" in str(info.value)
    with pytest.raises(ConfigurationError, match="CLIENT_SECRET"):
        Settings.from_mapping({**BASE, "FORWARD_TO": "c:1=a", "CLIENT_ID": "orders-service"})
    Settings.from_mapping({**BASE, "FORWARD_TO": "customers:8002"})  # forwarding needs none


def test_the_token_endpoint_must_be_discoverable_or_set(tmp_path: Any) -> None:
    keys = tmp_path / "jwks.json"
    keys.write_text('{"keys": []}')
    local = {"ISSUER": "issuer-name", "AUDIENCE": "orders-service", "PUBLIC_KEYS": str(keys), **CREDENTIAL}
    with pytest.raises(ConfigurationError, match="set TOKEN_ENDPOINT"):
        Settings.from_mapping({**local, "FORWARD_TO": "c:1=a"})
    settings = Settings.from_mapping({**local, "FORWARD_TO": "c:1=a", "TOKEN_ENDPOINT": "https://gw.test/oauth2/token"})
    assert settings.token_endpoint == "https://gw.test/oauth2/token"


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("http://gateway.internal/oauth2/token", "https"),
        ("https://user:pw@gateway.test/oauth2/token", "credentials"),
        ("gateway.test/oauth2/token", r"absolute http\(s\) URL"),
    ],
)
def test_the_token_endpoint_is_tls_or_loopback(url: str, fix: str) -> None:
    with pytest.raises(ConfigurationError, match=fix):
        Settings.from_mapping({**BASE, "TOKEN_ENDPOINT": url})
    for fine in ("http://127.0.0.1:8000/oauth2/token", "http://localhost:8000/t", "http://[::1]:8/t"):
        assert Settings.from_mapping({**BASE, "TOKEN_ENDPOINT": fine}).token_endpoint == fine


def test_every_source_reads_the_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {f"TOKEN_MIDDLEWARE_{k}": v for k, v in {
        **BASE, **CREDENTIAL, "FORWARD_TO": "127.0.0.1:8002=customers-service, 127.0.0.1:8003",
        "TOKEN_ENDPOINT": "http://127.0.0.1:8000/oauth2/token",
    }.items()}
    from_env = Settings.from_env(env)
    from_flask = Settings.from_prefixed(env, environ={})
    from_django = Settings.from_mapping({k.removeprefix("TOKEN_MIDDLEWARE_"): v for k, v in env.items()})
    assert from_env == from_flask == from_django
    assert from_env.allowlist.audiences == frozenset({"customers-service"})
    assert from_env.client_id == "orders-service"


def test_the_secret_never_shows() -> None:
    settings = Settings.from_mapping({**BASE, **CREDENTIAL, "FORWARD_TO": "c:1=a"})
    from token_middleware.core.forwarding import exchanger_for

    shown = [repr(settings), str(settings), repr(exchanger_for(settings))]
    assert not [text for text in shown if "s3cret-value" in text]
    with pytest.raises(ConfigurationError) as info:
        Settings.from_mapping({**BASE, "CLIENT_ID": "x", "CLIENT_SECRET": 12345})
    assert "12345" not in str(info.value)
