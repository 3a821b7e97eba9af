"""Settings: every NAME from a mapping, the environment and prefixed keys; validation at start-up."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from token_middleware.core.errors import ConfigurationError
from token_middleware.core import hosts
from token_middleware.core.hosts import HostAllowlist
from token_middleware.core.settings import DEFAULTS, NAMES, Settings

ISSUER = "https://issuer.test"

# (NAME, value as given, attribute, parsed value). Strings are what the environment would carry.
EVERY_NAME = [
    ("ISSUER", "https://a.test, https://b.test", "issuers", ("https://a.test", "https://b.test")),
    ("AUDIENCE", " orders-service ", "audience", "orders-service"),
    ("JWKS_URL", "https://issuer.test/jwks", "jwks_url", "https://issuer.test/jwks"),
    ("ALGORITHMS", "RS256, ES384", "algorithms", ("RS256", "ES384")),
    ("LEEWAY", "12", "leeway", 12),
    ("ACCEPTED_TYPES", "at+jwt,JWT", "accepted_types", ("at+jwt", "jwt")),
    ("REQUIRED_CLAIMS", "exp,sub", "required_claims", ("exp", "sub")),
    ("SCOPE_CLAIMS", "scp", "scope_claims", ("scp",)),
    ("FORWARD_TO", "Customers:8002, API.example", "forward_to", ("customers:8002", "api.example")),
    ("JWKS_CACHE_SECONDS", "600", "jwks_cache_seconds", 600),
    ("JWKS_MIN_REFRESH_SECONDS", "10", "jwks_min_refresh_seconds", 10),
    ("HTTP_TIMEOUT", "2.5", "http_timeout", 2.5),
    ("MAX_TOKEN_BYTES", "4096", "max_token_bytes", 4096),
    ("ALLOW_QUERY_TOKEN", "yes", "allow_query_token", True),
    ("AUDIENCE_CLAIMS", "aud, client_id", "audience_claims", ("aud", "client_id")),
    ("INTROSPECTION_URL", "https://issuer.test/introspect", "introspection_url", "https://issuer.test/introspect"),
    ("CLIENT_ID", "orders-service", "client_id", "orders-service"),
    ("CLIENT_SECRET", "s3cret", "client_secret", "s3cret"),
    ("INTROSPECTION_REQUIRED_CLAIMS", "exp, sub", "introspection_required_claims", ("exp", "sub")),
    ("INTROSPECTION_CACHE_SECONDS", "15", "introspection_cache_seconds", 15),
    ("TOKEN_ENDPOINT", "https://issuer.test/oauth2/token", "token_endpoint", "https://issuer.test/oauth2/token"),
]


def _base(name: str) -> dict[str, Any]:
    base: dict[str, Any] = {"ISSUER": ISSUER, "AUDIENCE": "svc"}
    if name == "INTROSPECTION_URL":  # needs the client credential beside it
        base.update(CLIENT_ID="svc", CLIENT_SECRET="s3cret")
    base.pop(name, None)
    return base


def test_the_table_covers_every_name() -> None:
    assert {row[0] for row in EVERY_NAME} | {"PUBLIC_KEYS"} == set(NAMES)


@pytest.mark.parametrize(("name", "raw", "attr", "parsed"), EVERY_NAME, ids=[r[0] for r in EVERY_NAME])
@pytest.mark.parametrize("source", ["mapping", "env", "prefixed"])
def test_every_name_from_every_source(source: str, name: str, raw: str, attr: str, parsed: Any) -> None:
    values = {**_base(name), name: raw}
    if source == "mapping":
        settings = Settings.from_mapping(values)
    elif source == "env":
        settings = Settings.from_env({f"TOKEN_MIDDLEWARE_{k}": v for k, v in values.items()})
    else:
        settings = Settings.from_prefixed({f"TOKEN_MIDDLEWARE_{k}": v for k, v in values.items()}, environ={})
    assert getattr(settings, attr) == parsed


def test_public_keys_from_every_source(tmp_path: Path) -> None:
    path = tmp_path / "keys.pem"
    path.write_text("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
    assert Settings.from_mapping({**_base(""), "PUBLIC_KEYS": path}).public_keys == str(path)
    env = {"TOKEN_MIDDLEWARE_ISSUER": ISSUER, "TOKEN_MIDDLEWARE_AUDIENCE": "svc", "TOKEN_MIDDLEWARE_PUBLIC_KEYS": str(path)}
    assert Settings.from_env(env).public_keys == str(path)


def test_defaults_match_the_design() -> None:
    s = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": "svc"})
    assert (s.jwks_url, s.public_keys) == (None, None)
    assert s.algorithms == ("RS256", "ES256")
    assert s.leeway == 30
    assert s.accepted_types == ("at+jwt", "application/at+jwt")
    assert s.required_claims == ("exp", "iat", "iss", "aud", "sub")
    assert s.scope_claims == ("scope", "scp")
    assert s.forward_to == ()
    assert (s.jwks_cache_seconds, s.jwks_min_refresh_seconds, s.http_timeout) == (300, 30, 5.0)
    assert (s.max_token_bytes, s.allow_query_token) == (8192, False)
    assert s.realm == "svc" and s.issuer == ISSUER
    assert set(DEFAULTS) | {"ISSUER", "AUDIENCE"} == set(NAMES)


def test_prefixed_values_win_over_the_environment_which_is_the_fallback() -> None:
    env = {"TOKEN_MIDDLEWARE_AUDIENCE": "from-env", "TOKEN_MIDDLEWARE_LEEWAY": "7"}
    s = Settings.from_prefixed({"TOKEN_MIDDLEWARE_ISSUER": ISSUER, "TOKEN_MIDDLEWARE_AUDIENCE": "from-config"}, environ=env)
    assert (s.audience, s.leeway) == ("from-config", 7)


def test_python_sequences_are_accepted_for_lists() -> None:
    s = Settings.from_mapping({"ISSUER": [ISSUER], "AUDIENCE": "svc", "ALGORITHMS": ["ES256"], "FORWARD_TO": ("a:1",)})
    assert (s.issuers, s.algorithms, s.forward_to) == ((ISSUER,), ("ES256",), ("a:1",))


REFUSED = [
    pytest.param({"ISSUER": None}, "ISSUER", "TOKEN_MIDDLEWARE_ISSUER", id="missing-issuer"),
    pytest.param({"ISSUER": " , "}, "ISSUER", "TOKEN_MIDDLEWARE_ISSUER", id="blank-issuer"),
    pytest.param({"AUDIENCE": None}, "AUDIENCE", "TOKEN_MIDDLEWARE_AUDIENCE", id="missing-audience"),
    pytest.param({"AUDIENCE": "  "}, "AUDIENCE", "TOKEN_MIDDLEWARE_AUDIENCE", id="blank-audience"),
    pytest.param({"ALGORITHMS": "none"}, "ALGORITHMS", "'none'", id="alg-none"),
    pytest.param({"ALGORITHMS": "None"}, "ALGORITHMS", "'none'", id="alg-None"),
    pytest.param({"ALGORITHMS": "NONE"}, "ALGORITHMS", "'none'", id="alg-NONE"),
    pytest.param({"ALGORITHMS": "RS256,nOnE"}, "ALGORITHMS", "'none'", id="alg-nOnE-beside-RS256"),
    pytest.param({"ALGORITHMS": "RS256,HS256"}, "ALGORITHMS", "Remove the HS* entries", id="hs256-beside-rs256"),
    pytest.param({"ALGORITHMS": ["ES256", "HS512"]}, "ALGORITHMS", "Remove the HS* entries", id="hs512-beside-es256"),
    pytest.param({"ALGORITHMS": "HS256"}, "ALGORITHMS", "PUBLIC_KEYS", id="hs-without-secret-file"),
    pytest.param({"ALGORITHMS": "PS256"}, "ALGORITHMS", "choose from", id="unsupported-alg"),
    pytest.param({"ALGORITHMS": ""}, "ALGORITHMS", "at least one", id="no-algorithms"),
    pytest.param({"LEEWAY": "soon"}, "LEEWAY", "must be a number", id="leeway-not-number"),
    pytest.param({"LEEWAY": -1}, "LEEWAY", ">= 0", id="leeway-negative"),
    pytest.param({"LEEWAY": 1.5}, "LEEWAY", "whole number", id="leeway-fraction"),
    pytest.param({"LEEWAY": True}, "LEEWAY", "boolean", id="leeway-bool"),
    pytest.param({"HTTP_TIMEOUT": "nan"}, "HTTP_TIMEOUT", "HTTP_TIMEOUT", id="timeout-nan"),
    pytest.param({"HTTP_TIMEOUT": "inf"}, "HTTP_TIMEOUT", "HTTP_TIMEOUT", id="timeout-inf"),
    pytest.param({"HTTP_TIMEOUT": 0}, "HTTP_TIMEOUT", ">= 0.001", id="timeout-zero"),
    pytest.param({"MAX_TOKEN_BYTES": 10}, "MAX_TOKEN_BYTES", ">= 64", id="max-bytes-tiny"),
    pytest.param({"JWKS_CACHE_SECONDS": "5m"}, "JWKS_CACHE_SECONDS", "must be a number", id="cache-with-unit"),
    pytest.param({"JWKS_MIN_REFRESH_SECONDS": -5}, "JWKS_MIN_REFRESH_SECONDS", ">= 0", id="min-refresh-negative"),
    pytest.param({"ALLOW_QUERY_TOKEN": "maybe"}, "ALLOW_QUERY_TOKEN", "true or false", id="query-not-bool"),
    pytest.param({"ACCEPTED_TYPES": ""}, "ACCEPTED_TYPES", "at+jwt", id="no-accepted-types"),
    pytest.param({"JWKS_URL": "ftp://keys.test/jwks"}, "JWKS_URL", "http(s) URL", id="jwks-url-ftp"),
    pytest.param({"JWKS_URL": "/jwks"}, "JWKS_URL", "http(s) URL", id="jwks-url-relative"),
    pytest.param({"ISSUER": "issuer-without-url"}, "ISSUER", "http(s) URL", id="discovery-needs-url-issuer"),
    pytest.param({"PUBLIC_KEYS": "/nonexistent/keys.pem"}, "PUBLIC_KEYS", "not found", id="public-keys-missing"),
    pytest.param({"FORWARD_TO": "https://customers:8002"}, "FORWARD_TO", "no scheme", id="forward-to-scheme"),
    pytest.param({"FORWARD_TO": "*.example.com"}, "FORWARD_TO", "wildcard", id="forward-to-wildcard"),
    pytest.param({"FORWARD_TO": "customers/api"}, "FORWARD_TO", "no scheme, path", id="forward-to-path"),
    pytest.param({"FORWARD_TO": "user@customers"}, "FORWARD_TO", "host:port", id="forward-to-userinfo"),
    # The one strict host parser (core.hosts) checks FORWARD_TO: what could never match stops
    # the app, and the message says what to write instead.
    pytest.param({"FORWARD_TO": "https://customers:8002/api"}, "FORWARD_TO", "write 'customers:8002'", id="forward-to-url-fix"),
    pytest.param({"FORWARD_TO": "user@customers"}, "FORWARD_TO", "write 'customers'", id="forward-to-userinfo-fix"),
    pytest.param({"FORWARD_TO": "ok, ::1"}, "FORWARD_TO", "brackets: '[::1]:8002'", id="forward-to-bare-ipv6"),
    pytest.param({"FORWARD_TO": "[not-an-ip]:80"}, "FORWARD_TO", "e.g. 'customers:8002'", id="forward-to-brackets-without-ip"),
    pytest.param({"FORWARD_TO": "customers:0"}, "FORWARD_TO", "port outside 1-65535", id="forward-to-port-zero"),
    pytest.param({"FORWARD_TO": "customers:65536"}, "FORWARD_TO", "port outside 1-65535", id="forward-to-port-too-large"),
    pytest.param({"FORWARD_TO": "customers:http"}, "FORWARD_TO", "e.g. 'customers:8002'", id="forward-to-port-not-a-number"),
    pytest.param({"FORWARD_TO": "cust omers"}, "FORWARD_TO", "e.g. 'customers:8002'", id="forward-to-space"),
    pytest.param({"FORWARD_TO": "customers."}, "FORWARD_TO", "host:port", id="forward-to-trailing-dot"),
    pytest.param({"FORWARD_TO": ["customers", 8002]}, "FORWARD_TO", "only strings", id="forward-to-non-string"),
    pytest.param({"ALGORITHMS": 256}, "ALGORITHMS", "list of strings", id="algorithms-not-a-list"),
    pytest.param({"SCOPE_CLAIMS": ["scope", 3]}, "SCOPE_CLAIMS", "only strings", id="scope-claims-non-string"),
    pytest.param({"ISSUERR": ISSUER}, "ISSUERR", "known settings are", id="unknown-name"),
    pytest.param({"issuer": ISSUER}, "issuer", "known settings are", id="unknown-lowercase-name"),
]


@pytest.mark.parametrize(("changes", "setting", "fix"), REFUSED)
def test_invalid_settings_are_refused_naming_the_fix(changes: dict[str, Any], setting: str, fix: str) -> None:
    values = {"ISSUER": ISSUER, "AUDIENCE": "svc", **changes}
    with pytest.raises(ConfigurationError) as excinfo:
        Settings.from_mapping(values)
    assert excinfo.value.setting == setting
    assert fix in str(excinfo.value)


def test_jwks_url_and_public_keys_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text("{}")
    with pytest.raises(ConfigurationError, match="either JWKS_URL or PUBLIC_KEYS"):
        Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": "s", "JWKS_URL": "https://k.test/jwks", "PUBLIC_KEYS": str(path)})


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "nOnE"])
def test_none_is_refused_from_the_environment_too(spelling: str) -> None:
    env = {"TOKEN_MIDDLEWARE_ISSUER": ISSUER, "TOKEN_MIDDLEWARE_AUDIENCE": "s", "TOKEN_MIDDLEWARE_ALGORITHMS": f"ES256,{spelling}"}
    with pytest.raises(ConfigurationError, match="must not contain 'none'"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("Customers", ("customers",), id="lower-cased"),
        pytest.param(" customers:8002 ,, api.example ", ("customers:8002", "api.example"), id="trimmed-empties-dropped"),
        pytest.param("", (), id="empty-means-never"),
        pytest.param(["A.Example:443"], ("a.example:443",), id="list"),
    ],
)
def test_forward_to_is_normalised(raw: Any, expected: tuple[str, ...]) -> None:
    assert Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": "s", "FORWARD_TO": raw}).forward_to == expected


def test_forward_to_is_parsed_once_into_the_allowlist_the_clients_use() -> None:
    s = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": "s", "FORWARD_TO": "Customers:8002, [0:0::1]:9000, customers:8002"})
    assert s.forward_to == ("customers:8002", "[::1]:9000")
    assert s.allowlist is s.allowlist  # parsed at construction, not per call
    assert s.allowlist == HostAllowlist(s.forward_to)
    assert s.allowlist.permits("http://customers:8002/x") and not s.allowlist.permits("http://customers/x")
    assert Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": "s"}).allowlist == HostAllowlist()


def test_one_host_normaliser_in_the_package() -> None:
    # Settings and the outgoing clients share core.hosts; a second, looser parser must not return.
    package = Path(hosts.__file__).parent.parent
    pattern = re.compile(r"^\s*def \w*normali[sz]e_host\b", re.M)
    found = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if pattern.search(p.read_text()))
    assert found == ["core/hosts.py"]


def test_settings_built_directly_are_checked_too() -> None:
    s = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": "s"})
    assert dataclasses.replace(s, forward_to=("A.example",)).forward_to == ("a.example",)
    with pytest.raises(ConfigurationError, match="write 'customers'"):
        dataclasses.replace(s, forward_to=("http://customers",))


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False), ("", False), (False, False)])
def test_boolean_spellings(raw: Any, expected: bool) -> None:
    assert Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": "s", "ALLOW_QUERY_TOKEN": raw}).allow_query_token is expected


def test_as_mapping_round_trips() -> None:
    s = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": "svc", "LEEWAY": 3})
    again = Settings.from_mapping(s.as_mapping())
    assert again == s
