"""Hostile input at the gateway (hypothesis): odd methods, huge headers, broken Basic credentials,
CRLF and NUL in header values, odd paths and queries, spoofed identity headers.

Requests are built as raw WSGI environs (what a lenient server could hand over, CRLF included)
and run through the real gateway app, which forwards to real upstream servers on loopback. For
every input:

- the gateway never answers 5xx (the upstreams are healthy, so any 5xx is the gateway's fault);
- whatever reaches an upstream carries exactly one ``Authorization``: a ``Bearer`` token that
  the core validator accepts for that route's audience, whose ``sub`` is the user whose correct
  password was sent; and no client-sent identity header;
- the forwarded path lies under the route's prefix and has no dot segments.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_stack import FIGURES, Recorder, Received, scaled, user_passwords, write_users_file
from werkzeug.test import EnvironBuilder, run_wsgi_app

from token_middleware.core.errors import InvalidToken
from token_middleware.gateway import Gateway, GatewayConfig, Route
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator

ISSUER = "http://gateway.test"
MAX_EXAMPLES = scaled(500, 20_000)
PROBE = "HTTP_X_HOSTILE_PROBE"
CLIENT_ADDRESS = "192.0.2.10"

#: Identity headers a client may send to impersonate someone (environ names).
IDENTITY_ENVIRON = (
    "HTTP_X_USER",
    "HTTP_X_USER_ID",
    "HTTP_X_FORWARDED_USER",
    "HTTP_X_FORWARDED_EMAIL",
    "HTTP_X_REMOTE_USER",
    "HTTP_REMOTE_USER",
    "HTTP_X_AUTH_REQUEST_USER",
    "HTTP_X_AUTH_USER",
    "HTTP_X_ACCESS_TOKEN",
    "HTTP_X_ID_TOKEN",
    "HTTP_X_JWT_ASSERTION",
    "HTTP_FORWARDED",
    "HTTP_X_REAL_IP",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_PROXY_AUTHORIZATION",
)
IDENTITY_NAMES = {k[5:].replace("_", "-").lower() for k in IDENTITY_ENVIRON}
#: Set by the gateway itself (from the connection, not the client).
GATEWAY_SET = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}


@dataclass
class Tally:
    inputs: int = 0
    forwarded: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


@dataclass
class Rig:
    gateway: Gateway
    orders: Recorder
    customers: Recorder
    validators: dict[str, TokenValidator]
    passwords: dict[str, str]
    tally: Tally


@pytest.fixture(scope="module")
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("hostile")
    passwords = user_passwords(3)
    users_file = write_users_file(tmp / "users.json", passwords)
    with Recorder() as orders, Recorder() as customers:
        config = GatewayConfig(
            issuer=ISSUER,
            routes=(
                Route("/orders", orders.url, ("orders-service", "customers-service")),
                Route("/customers", customers.url, ("customers-service",)),
            ),
            users_file=users_file,
            keys_dir=tmp / "keys",
            upstream_timeout=5.0,
            login_max_failures=1_000_000,  # the limiter has its own tests; here it would hide input
        )
        gateway = Gateway(config)
        jwks = Path(tmp / "jwks.json")
        jwks.write_text(json.dumps(gateway.keystore.jwks()))
        validators = {
            aud: TokenValidator(
                Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": aud, "PUBLIC_KEYS": str(jwks)}),
                cache_size=0,
            )
            for aud in ("orders-service", "customers-service")
        }
        rig = Rig(gateway, orders, customers, validators, passwords, Tally())
        try:
            yield rig
        finally:
            gateway.close()
            t = rig.tally
            five_xx = sum(n for code, n in t.statuses.items() if code >= 500)
            line = (
                f"[reliability] hostile gateway input: inputs={t.inputs} forwarded={t.forwarded} "
                f"5xx={five_xx} statuses={dict(sorted(t.statuses.items()))}"
            )
            print(line)
            request.config.stash[FIGURES].append(line)


# --- strategies --------------------------------------------------------------------------------

LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
CONTROL = st.sampled_from(["\r\n", "\n", "\r", "\x00", "\r\nX-User: bob", "\r\n\r\nGET / HTTP/1.1", "\t"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def latin1(text: str) -> str:
    """A str as a WSGI server hands it over (bytes decoded as latin-1)."""
    return text.encode("utf-8").decode("latin-1")


methods = st.one_of(
    st.sampled_from(
        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "TRACK", "CONNECT",
         "PROPFIND", "M-SEARCH", "BREW", "get", "Get", "G\x00ET", "GET /x", "", "\r\n", "X" * 300]
    ),
    st.text(LATIN1, min_size=1, max_size=12),
)

paths = st.one_of(
    st.sampled_from(
        ["/orders", "/orders/", "/orders/whoami", "/customers/alice", "/orders/../customers/x",
         "/orders/%2e%2e/admin", "/orders/./x", "//orders", "/orders//x", "/orders\x00/x",
         "/orders/%0d%0aX-User:%20bob", "/orders/\r\nX-User: bob", "/ordersx", "/orders;x",
         "/ORDERS", "/orders/%2F..%2Fadmin", "/orders/\u00e9", "/customers/..", "/orders/#frag",
         "/", "", "/login", "/_auth", "/.well-known/jwks.json", "/healthz", "/app", "*"]
    ),
    st.builds(lambda p, s: p + s, st.sampled_from(["/orders/", "/customers/"]), st.text(LATIN1, max_size=30)),
)

queries = st.one_of(st.just(""), st.sampled_from(["a=1", "x=%0d%0a", "a b", "#", "q=\u00ff"]), st.text(LATIN1, max_size=30))


@dataclass(frozen=True)
class Credential:
    header: str | None
    user: str | None  # the user this credential correctly authenticates, else None


def credentials(passwords: dict[str, str]) -> st.SearchStrategy[Credential]:
    users = sorted(passwords)
    valid = st.sampled_from(users).map(lambda u: Credential(f"Basic {b64(f'{u}:{passwords[u]}'.encode())}", u))
    scheme_case = st.sampled_from(users).map(
        lambda u: Credential(f"bAsIc {b64(f'{u}:{passwords[u]}'.encode())}", u)
    )
    bad = st.one_of(
        st.just(Credential(None, None)),
        st.sampled_from(["", "Basic", "Basic ", "Basic  ", "Basic ====", "Basic Og==", "Basic OmFi",
                         "Bearer x.y.z", "Bearer", "Digest abc", "Basic YWxpY2U6", "Basic \u00ff\u00fe"])
        .map(lambda h: Credential(h, None)),
        st.sampled_from(users).map(lambda u: Credential(f"Basic {b64(f'{u}:wrong'.encode())}", None)),
        st.text(LATIN1, max_size=40).map(lambda t: Credential(f"Basic {t}", None)),
        st.binary(max_size=40).map(lambda b: Credential(f"Basic {b64(b)}", None)),  # non-UTF-8, no colon
        st.binary(max_size=20).map(lambda b: Credential("Basic " + b64(b"\xff" + b + b":pw"), None)),
        st.text(max_size=20).map(lambda t: Credential(f"Basic {b64(t.encode())}", None)),  # no colon
        st.integers(4097, 70_000).map(lambda n: Credential("Basic " + "QUFB" * (n // 4), None)),
        # Trailing whitespace is optional whitespace around a field value (RFC 9110 §5.5): the
        # credential is still the user's; anything else after it is garbage.
        st.tuples(st.sampled_from(users), CONTROL).map(
            lambda uc: Credential(
                f"Basic {b64(f'{uc[0]}:{passwords[uc[0]]}'.encode())}{uc[1]}",
                uc[0] if not uc[1].strip() else None,
            )
        ),
        st.tuples(st.sampled_from(users), CONTROL).map(
            lambda uc: Credential(f"Basic {b64(f'{uc[0]}{uc[1]}:{passwords[uc[0]]}'.encode())}", None)
        ),
    )
    return st.one_of(valid, scheme_case, bad)


header_values = st.one_of(
    st.text(LATIN1, max_size=40),
    st.tuples(st.text(max_size=10), CONTROL, st.text(max_size=10)).map("".join),
    st.sampled_from(["bob", "admin", "orders:write", "Bearer x.y.z"]),
)
header_names = st.one_of(
    st.sampled_from(IDENTITY_ENVIRON + ("HTTP_COOKIE", "HTTP_CONNECTION", "HTTP_TE", "HTTP_X_REQUEST_ID",
                                        "HTTP_CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING",
                                        "HTTP_HOST", "HTTP_EXPECT", "HTTP_UPGRADE")),
    st.from_regex(r"HTTP_[A-Z][A-Z0-9_]{0,20}", fullmatch=True),
)
extra_headers = st.dictionaries(header_names, header_values, max_size=6)
huge = st.one_of(st.just(0), st.integers(1, 200_000))


def environ_for(method: str, path: str, query: str, credential: Credential, headers: dict[str, str],
                huge_size: int, probe: str) -> dict[str, Any]:
    environ: dict[str, Any] = EnvironBuilder(path="/", base_url="http://gateway.test").get_environ()
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=latin1(path),
        QUERY_STRING=latin1(query),
        RAW_URI=latin1(path + ("?" + query if query else "")),
        REQUEST_URI=latin1(path + ("?" + query if query else "")),
        REMOTE_ADDR=CLIENT_ADDRESS,
    )
    environ["wsgi.input"] = io.BytesIO(b"")
    for name, value in headers.items():
        environ[name] = latin1(value)
    if credential.header is not None:
        environ["HTTP_AUTHORIZATION"] = latin1(credential.header)
    if huge_size:
        environ["HTTP_X_HUGE"] = "a" * huge_size
    environ[PROBE] = probe
    return environ


def received_for(rig: Rig, probe: str) -> list[tuple[str, Received]]:
    found = []
    for prefix, recorder in (("/orders", rig.orders), ("/customers", rig.customers)):
        found += [(prefix, r) for r in recorder.snapshot() if r.header("X-Hostile-Probe") == probe]
    return found


def check_forwarded(rig: Rig, prefix: str, received: Received, credential: Credential,
                    sent: dict[str, str]) -> None:
    authorizations = [v for k, v in received.headers if k.lower() == "authorization"]
    assert len(authorizations) == 1, "exactly one Authorization must reach the upstream"
    scheme, _, token = authorizations[0].partition(" ")
    assert scheme == "Bearer"
    audience = "orders-service" if prefix == "/orders" else "customers-service"
    try:
        access = rig.validators[audience].validate(token)
    except InvalidToken as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"forwarded token refused by the core: {exc.description}")
    assert credential.user is not None, "forwarded without a correct password"
    assert access.subject == credential.user
    assert access.client_id == "gateway"
    names = received.header_names()
    for name in IDENTITY_NAMES - GATEWAY_SET:
        assert name not in names, f"client identity header {name} was forwarded"
    assert received.header("X-Forwarded-For") == CLIENT_ADDRESS
    assert received.header("X-Forwarded-Proto") == "http"
    if "HTTP_X_FORWARDED_HOST" in sent:
        assert received.header("X-Forwarded-Host") != sent["HTTP_X_FORWARDED_HOST"] or (
            sent["HTTP_X_FORWARDED_HOST"] == sent.get("HTTP_HOST", "gateway.test")
        ), "a client-sent X-Forwarded-Host reached the upstream"
    target = unquote(received.target.split("?", 1)[0])
    assert target == prefix or target.startswith(prefix + "/"), received.target
    segments = target.split("/")
    assert "." not in segments and ".." not in segments, received.target


def run_example(rig: Rig, method: str, path: str, query: str, credential: Credential,
                headers: dict[str, str], huge_size: int) -> bool:
    """Run one request through the gateway, check it, and say whether it was forwarded."""
    probe = uuid.uuid4().hex
    environ = environ_for(method, path, query, credential, headers, huge_size, probe)
    app_iter, status, response_headers = run_wsgi_app(rig.gateway, environ, buffered=True)
    body = b"".join(app_iter)
    code = int(status.split(" ", 1)[0])
    rig.tally.inputs += 1
    rig.tally.statuses[code] += 1

    assert code < 500, f"{status}: {body[:300]!r}"
    forwarded = received_for(rig, probe)
    if response_headers.get("X-Recorder") == "1":
        assert len(forwarded) == 1, "an upstream answer must come from exactly one forwarded request"
        rig.tally.forwarded += 1
        prefix, received = forwarded[0]
        check_forwarded(rig, prefix, received, credential, headers)
    else:
        assert forwarded == [], f"{status} answered by the gateway, yet something was forwarded"
    if code == 401:
        assert response_headers.get("WWW-Authenticate") == 'Basic realm="gateway"'
    return bool(forwarded)


PROFILE = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)


@PROFILE
@given(data=st.data())
def test_hostile_requests_never_cause_a_5xx_or_forward_a_client_identity(rig: Rig, data: st.DataObject) -> None:
    run_example(
        rig,
        method=data.draw(methods, "method"),
        path=data.draw(paths, "path"),
        query=data.draw(queries, "query"),
        credential=data.draw(credentials(rig.passwords), "credential"),
        headers=data.draw(extra_headers, "headers"),
        huge_size=data.draw(huge, "huge"),
    )


@PROFILE
@given(data=st.data())
def test_authenticated_requests_with_spoofed_identity_are_forwarded_as_the_real_user(
    rig: Rig, data: st.DataObject
) -> None:
    """Valid credentials plus every identity header a client could forge: the request goes
    through, as the authenticated user only."""
    users = sorted(rig.passwords)
    user = data.draw(st.sampled_from(users), "user")
    credential = Credential(f"Basic {b64(f'{user}:{rig.passwords[user]}'.encode())}", user)
    spoofed = {name: data.draw(st.sampled_from(["bob", "admin", "Bearer a.b.c", "203.0.113.9", users[0]]))
               for name in data.draw(st.lists(st.sampled_from(IDENTITY_ENVIRON), min_size=1, unique=True))}
    forwarded = run_example(
        rig,
        method=data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]), "method"),
        path=data.draw(st.sampled_from(["/orders/whoami", "/orders", "/customers/alice"]), "path"),
        query="",
        credential=credential,
        headers=spoofed,
        huge_size=0,
    )
    assert forwarded, "a correctly authenticated request must still be forwarded"
