"""A real RFC 8693 token endpoint on loopback, for the exchange tests only.

It follows shared/DESIGN.md "Per-hop token exchange" (the contract the gateway's own endpoint
will be built to): clients authenticate with ``client_secret_basic`` (id and secret
form-encoded, RFC 6749 §2.3.1); the form is ``grant_type``, ``subject_token``,
``subject_token_type``, exactly one ``audience`` and an optional ``scope``; the subject token
is validated with the full policy against this issuer's key, and its ``aud`` must contain the
client's own audience. The issued token keeps ``sub``, has the target audience alone, the
requested scopes (default: the subject's ∩ the client's allowance, never more), ``client_id``
the client, ``act`` the client nesting the subject's own ``act``, an ``exp`` never later than the
subject's and a new ``jti``. Answers are 200 JSON with ``Cache-Control: no-store``, or RFC 6749
§5.2 errors (401 ``invalid_client`` with a Basic challenge; 400 ``invalid_request``,
``invalid_grant``, ``invalid_target``, ``invalid_scope``, ``unsupported_grant_type``).

It also serves discovery (``token_endpoint`` included) and its JWKS. Every request to the token
endpoint is recorded (:attr:`TokenEndpoint.calls`), so a test counts exchanges where they
happen. ``hold()`` makes answers wait until released; ``answer_with(...)`` replaces the
answer, to test what a broken or hostile endpoint does to the client.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from token_middleware.core.errors import BearerError
from token_middleware.core.issuer import SigningKey, TokenIssuer, jwks_document
from token_middleware.core.keys import KeySet, StaticKeySource
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken, act_claim
from token_middleware.core.validator import TokenValidator

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
PATH = "/oauth2/token"


@dataclass(frozen=True)
class Client:
    """A client of the endpoint: its secret, its own audience, and what it may exchange for."""

    secret: str
    audience: str
    may_exchange_for: Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Call:
    """One request to the token endpoint, as the endpoint judged it (``error`` None: issued)."""

    client_id: str | None
    audience: str | None
    subject_fingerprint: bytes | None
    status: int
    error: str | None
    issued: str | None = field(default=None, repr=False)


class _Refusal(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: TokenEndpoint


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # never print tokens or credentials to the test output

    def reply(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        owner = self.server.owner
        documents = {
            "/.well-known/openid-configuration": owner.discovery(),
            "/.well-known/jwks.json": jwks_document([owner.key]),
        }
        document = documents.get(self.path)
        if document is None:
            self.reply(404, b"{}", {"Content-Type": "application/json"})
        else:
            self.reply(200, json.dumps(document).encode(), {"Content-Type": "application/json"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path != PATH:
            self.reply(404, b"{}", {"Content-Type": "application/json"})
            return
        status, answer, headers = self.server.owner.exchange(self.headers, body)
        self.reply(status, answer, headers)


class TokenEndpoint:
    """The endpoint, on 127.0.0.1 and a free port: ``with TokenEndpoint(key, clients) as e: ...``."""

    def __init__(self, key: SigningKey, clients: Mapping[str, Client], *, ttl: int = 300) -> None:
        self.key = key
        self.clients = dict(clients)
        self.ttl = ttl
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.token_url = self.issuer + PATH
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._gate: threading.Event | None = None
        self._forced: tuple[int, bytes, dict[str, str]] | None = None
        self._thread: threading.Thread | None = None
        self._keys = StaticKeySource(KeySet.from_jwks(jwks_document([key]), [key.alg]))
        self._validators: dict[str, TokenValidator] = {}
        self.arrivals = 0

    # -- running ---------------------------------------------------------------------------

    def __enter__(self) -> TokenEndpoint:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._gate is not None:
            self._gate.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def hold(self) -> Iterator[threading.Event]:
        """Answers wait until the event yielded is set (it is set when the block ends)."""
        gate = threading.Event()
        self._gate = gate
        try:
            yield gate
        finally:
            gate.set()
            self._gate = None

    def wait_for_arrivals(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` requests have reached the token endpoint (False on timeout)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.arrivals >= count, timeout)

    def answer_with(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """From now on, answer every exchange with this (``body``: JSON-able, or bytes as they are)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._forced = (status, raw, {"Content-Type": "application/json", **(headers or {})})

    def answer_normally(self) -> None:
        """Undo :meth:`answer_with`."""
        self._forced = None

    @property
    def exchanges(self) -> list[Call]:
        """The calls that issued a token."""
        with self._lock:
            return [c for c in self.calls if c.error is None and c.status == 200]

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.issuer + "/.well-known/jwks.json",
            "token_endpoint": self.token_url,
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def settings_for(self, audience: str) -> Settings:
        return Settings.from_mapping({"ISSUER": self.issuer, "AUDIENCE": audience, "ALGORITHMS": self.key.alg})

    def _validator(self, audience: str) -> TokenValidator:
        found = self._validators.get(audience)
        if found is None:
            found = self._validators[audience] = TokenValidator(self.settings_for(audience), keys=self._keys)
        return found

    # -- one exchange ----------------------------------------------------------------------

    def exchange(self, headers: Any, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        with self._arrived:
            self.arrivals += 1
            self._arrived.notify_all()
        gate = self._gate
        if gate is not None:
            gate.wait(30)
        client_id: str | None = None
        audience: str | None = None
        subject: AccessToken | None = None
        try:
            client_id, client = self._authenticate(headers.get("Authorization"))
            form = self._form(headers.get("Content-Type"), body)
            audience = form.get("audience")
            subject, issued, scope, lifetime = self._issue(client_id, client, form)
        except _Refusal as refusal:
            self._record(Call(client_id, audience, subject.fingerprint if subject else None,
                              refusal.status, refusal.error))
            extra = {"WWW-Authenticate": 'Basic realm="token"'} if refusal.status == 401 else {}
            body_out = json.dumps({"error": refusal.error, "error_description": refusal.description}).encode()
            return refusal.status, body_out, {"Content-Type": "application/json", "Cache-Control": "no-store", **extra}
        forced = self._forced
        if forced is not None:
            self._record(Call(client_id, audience, subject.fingerprint, forced[0], "forced"))
            return forced
        self._record(Call(client_id, audience, subject.fingerprint, 200, None, issued))
        answer = {
            "access_token": issued,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(scope),
        }
        return 200, json.dumps(answer).encode(), {
            "Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache",
        }

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _authenticate(self, authorization: str | None) -> tuple[str, Client]:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            raise _Refusal(401, "invalid_client", "client authentication is required")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            raise _Refusal(401, "invalid_client", "malformed client credentials") from None
        raw_id, sep, raw_secret = decoded.partition(":")
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)  # RFC 6749 §2.3.1
        client = self.clients.get(client_id)
        if not sep or client is None or not hmac.compare_digest(secret.encode(), client.secret.encode()):
            raise _Refusal(401, "invalid_client", "unknown client or wrong secret")
        return client_id, client

    @staticmethod
    def _form(content_type: str | None, body: bytes) -> dict[str, str]:
        if (content_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            raise _Refusal(400, "invalid_request", "the request must be form-encoded")
        try:
            fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            raise _Refusal(400, "invalid_request", "the form is malformed") from None
        repeated = sorted(name for name, values in fields.items() if len(values) > 1)
        if repeated:
            raise _Refusal(400, "invalid_request", f"repeated parameter: {repeated[0]}")
        return {name: values[0] for name, values in fields.items()}

    def _issue(
        self, client_id: str, client: Client, form: Mapping[str, str]
    ) -> tuple[AccessToken, str, list[str], int]:
        for name in ("grant_type", "subject_token", "subject_token_type", "audience"):
            if not form.get(name):
                raise _Refusal(400, "invalid_request", f"missing parameter: {name}")
        if form["grant_type"] != GRANT_TYPE:
            raise _Refusal(400, "unsupported_grant_type", "only token exchange is supported")
        if form["subject_token_type"] != ACCESS_TOKEN_TYPE:
            raise _Refusal(400, "invalid_request", "subject_token_type must be an access token")
        try:  # the full policy; aud must contain the client's own audience
            subject = self._validator(client.audience).validate(form["subject_token"])
        except BearerError as err:
            raise _Refusal(400, "invalid_grant", f"the subject token is refused: {err.description}") from None
        target = form["audience"]
        allowed = client.may_exchange_for.get(target)
        if allowed is None:
            raise _Refusal(400, "invalid_target", "this client may not exchange for that audience")
        grantable = [s for s in allowed if s in subject.scopes]
        requested = form["scope"].split() if form.get("scope") else grantable
        if not set(requested) <= set(grantable):
            raise _Refusal(400, "invalid_scope", "more scopes than allowed")
        lifetime = self._lifetime(subject)
        if lifetime <= 0:
            raise _Refusal(400, "invalid_grant", "the subject token has expired")
        actors = (client_id, *subject.actors)
        issued = TokenIssuer(self.issuer, self.key).mint(
            sub=subject.subject, audience=target, scopes=requested, client_id=client_id,
            ttl=lifetime, act=act_claim(actors),
        )
        return subject, issued, requested, lifetime

    def _lifetime(self, subject: AccessToken) -> int:
        if subject.expires_at is None:
            return self.ttl
        return min(self.ttl, int(subject.expires_at - time.time()))
