"""The gateway's RFC 8693 token endpoint (``POST /oauth2/token``): one token per hop.

A service that received a token meant for it trades it here for a token meant for the next
service alone (shared/DESIGN.md "Per-hop token exchange").

What is trusted: the clients file (``GATEWAY_CLIENTS_FILE``, the operator's) and the gateway's
own key store. From a request, nothing until proven: the client authenticates with HTTP Basic
(``client_secret_basic``, id and secret form-encoded first, RFC 6749 §2.3.1), checked with
``werkzeug.security.check_password_hash`` (an unknown client costs the same dummy check as a
wrong secret, and both get the same answer). The subject token is validated with the full
policy by the library's :class:`~token_middleware.core.validator.TokenValidator`, in process,
against this gateway's issuer and keys; its ``aud`` must contain the client's own audience.

The issued token keeps ``sub``; ``aud`` is the target alone; ``scope`` is the requested scopes,
by default the subject's ∩ the client's allowance for the target, never more; ``client_id`` is
the client; ``act`` is ``{"sub": client_id}`` nesting the subject's own ``act``; ``exp`` is never
later than the subject's; ``jti`` is fresh. Errors are RFC 6749 §5.2 JSON bodies. Every answer
carries ``Cache-Control: no-store``. Nothing here logs a token or a secret.

Clients file::

    {"orders-service": {"secret_hash": "<werkzeug.security hash>", "audience": "orders-service",
                        "may_exchange_for": {"customers-service": ["customers:read"]}}}
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Request, Response

from token_middleware.core.errors import BearerError, ConfigurationError, UnknownKey
from token_middleware.core.issuer import TokenIssuer
from token_middleware.core.keys import KeySet, VerificationKey
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken, act_claim
from token_middleware.core.validator import TokenValidator

from .keystore import KeyStore

TOKEN_PATH = "/oauth2/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
AUTH_METHODS = ("client_secret_basic",)
#: Largest form accepted (a subject token is at most MAX_TOKEN_BYTES, 8 KiB by default).
MAX_FORM_BYTES = 16 * 1024
MAX_SECRET_LENGTH = 1024
MAX_ACTORS = 8
CHALLENGE = 'Basic realm="gateway", charset="UTF-8"'
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_SETTING = "CLIENTS_FILE"


@dataclass(frozen=True)
class ExchangeClient:
    """A service allowed to exchange: its own audience and, per target, the scopes it may get."""

    client_id: str
    audience: str
    may_exchange_for: Mapping[str, tuple[str, ...]]


def _name_ok(value: object) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= 256
            and not any(c.isspace() or ord(c) < 0x20 or c in '"\\' for c in value))


class ClientStore:
    """The clients of the token endpoint, loaded and checked once (start-up errors name the fix)."""

    def __init__(self, clients: Mapping[str, Any], *, source: str = "clients", cache_ttl: float = 60.0) -> None:
        where = f"GATEWAY_CLIENTS_FILE: {source}"
        if not isinstance(clients, Mapping):
            raise ConfigurationError(f"{where} must be a JSON object of clients", setting=_SETTING)
        self._clients: dict[str, ExchangeClient] = {}
        self._hashes: dict[str, str] = {}
        for client_id, entry in clients.items():
            self._add(where, client_id, entry)
        self._dummy_hash = generate_password_hash(secrets.token_urlsafe(16), method=self._method())
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self.cache_ttl = cache_ttl

    @classmethod
    def from_file(cls, path: str | Path) -> ClientStore:
        """Load ``path``; errors name the file and what is wrong with it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"GATEWAY_CLIENTS_FILE: cannot read {path}: {exc.strerror}",
                                     setting=_SETTING) from None
        except ValueError as exc:
            raise ConfigurationError(f"GATEWAY_CLIENTS_FILE: {path} is not valid JSON: {exc}",
                                     setting=_SETTING) from None
        return cls(data, source=str(path))

    def _add(self, where: str, client_id: object, entry: object) -> None:
        if not _name_ok(client_id) or ":" in str(client_id):
            raise ConfigurationError(f"{where}: client id {client_id!r} must be a short name without "
                                     "spaces, quotes or ':'", setting=_SETTING)
        assert isinstance(client_id, str)
        where = f"{where}: client {client_id!r}"
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{where}: expected an object with secret_hash, audience and "
                                     "may_exchange_for", setting=_SETTING)
        unknown = sorted(set(entry) - {"secret_hash", "audience", "may_exchange_for"})
        if unknown:
            raise ConfigurationError(f"{where}: unknown key(s) {', '.join(unknown)}", setting=_SETTING)
        secret_hash = entry.get("secret_hash")
        if not isinstance(secret_hash, str) or "$" not in secret_hash:
            raise ConfigurationError(
                f"{where}: 'secret_hash' must be a werkzeug.security hash (python -c 'from "
                "werkzeug.security import generate_password_hash as g; print(g(\"<secret>\"))')",
                setting=_SETTING)
        audience = entry.get("audience")
        if not _name_ok(audience):
            raise ConfigurationError(f"{where}: 'audience' must name the client's own audience, "
                                     "e.g. \"orders-service\"", setting=_SETTING)
        targets = entry.get("may_exchange_for", {})
        if not isinstance(targets, Mapping) or not all(
            _name_ok(t) and isinstance(s, list) and all(_name_ok(x) for x in s) for t, s in targets.items()
        ):
            raise ConfigurationError(f"{where}: 'may_exchange_for' must map each target audience to a "
                                     'list of scopes, e.g. {"customers-service": ["customers:read"]}',
                                     setting=_SETTING)
        assert isinstance(audience, str)
        self._hashes[client_id] = secret_hash
        self._clients[client_id] = ExchangeClient(
            client_id, audience, {str(t): tuple(dict.fromkeys(s)) for t, s in targets.items()})

    def _method(self) -> str:
        first = next(iter(self._hashes.values()), "")
        return first.split("$", 1)[0] or "scrypt"

    def __len__(self) -> int:
        return len(self._clients)

    def audiences(self) -> set[str]:
        """The clients' own audiences (one validator each)."""
        return {c.audience for c in self._clients.values()}

    def authenticate(self, client_id: str, secret: str) -> ExchangeClient | None:
        """The client when ``secret`` is right, else ``None``; unknown ids cost the same check."""
        if len(secret) > MAX_SECRET_LENGTH or len(client_id) > 256:
            return None
        digest = hmac.digest(self._cache_key, f"{client_id}\0{secret}".encode("utf-8", "surrogatepass"),
                             "sha256")
        now = time.monotonic()
        with self._lock:
            if self._verified.get(digest, 0.0) > now:
                return self._clients.get(client_id)
        stored = self._hashes.get(client_id)
        if stored is None:
            check_password_hash(self._dummy_hash, secret)
            return None
        if not check_password_hash(stored, secret):
            return None
        with self._lock:
            if len(self._verified) > 1024:
                self._verified.clear()
            self._verified[digest] = now + self.cache_ttl
        return self._clients[client_id]


class KeyStoreKeys:
    """A validator key source reading the key store's published set (rotations included)."""

    def __init__(self, keystore: KeyStore, algorithms: tuple[str, ...]) -> None:
        self.keystore, self.algorithms = keystore, algorithms
        self._seen: tuple[str, ...] = ()
        self._keyset = KeySet([])
        self._lock = threading.Lock()

    def _current(self) -> KeySet:
        document = self.keystore.jwks()
        kids = tuple(str(k.get("kid")) for k in document["keys"])
        with self._lock:
            if kids != self._seen:
                self._keyset, self._seen = KeySet.from_jwks(document, self.algorithms), kids
            return self._keyset

    def find(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        found = self._current().find(kid, alg)
        if not found:
            raise UnknownKey()
        return found

    def contains(self, key: VerificationKey) -> bool:
        return self._current().contains(key)

    def prefetch(self) -> None:
        return None


class TokenError(Exception):
    """An RFC 6749 §5.2 error answer."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


class TokenExchange:
    """The endpoint's logic: :meth:`answer` takes the request, returns the response and the
    result (``"ok"`` or the RFC 6749 error code, for metrics)."""

    def __init__(self, issuer: str, keystore: KeyStore, clients: ClientStore, *, ttl: int = 300,
                 algorithms: tuple[str, ...] = ("ES256", "RS256"),
                 clock: Callable[[], float] = time.time) -> None:
        self.issuer, self.keystore, self.clients, self.ttl, self.clock = issuer, keystore, clients, ttl, clock
        keys = KeyStoreKeys(keystore, algorithms)
        self._validators = {
            audience: TokenValidator(
                Settings.from_mapping({"ISSUER": issuer, "AUDIENCE": audience, "ALGORITHMS": ",".join(algorithms)}),
                keys=keys, clock=clock)
            for audience in clients.audiences()
        }
        self.issued = 0  # tokens issued by this process (tests)

    def answer(self, request: Request) -> tuple[Response, str]:
        try:
            body, scope = self._exchange(request)
        except TokenError as refused:
            headers = {**NO_STORE, **({"WWW-Authenticate": CHALLENGE} if refused.status == 401 else {})}
            error = {"error": refused.error, "error_description": refused.description}
            return _json(error, refused.status, headers), refused.error
        return _json(body, 200, NO_STORE), "ok"

    def _exchange(self, request: Request) -> tuple[dict[str, Any], list[str]]:
        client = self._authenticate(request.headers.get("Authorization"))
        form = _form(request)
        for name in ("grant_type", "subject_token", "subject_token_type", "audience"):
            if not form.get(name):
                raise TokenError(400, "invalid_request", f"missing parameter: {name}")
        if form["grant_type"] != GRANT_TYPE:
            raise TokenError(400, "unsupported_grant_type", f"only {GRANT_TYPE} is supported")
        if form["subject_token_type"] != ACCESS_TOKEN_TYPE:
            raise TokenError(400, "invalid_request", f"subject_token_type must be {ACCESS_TOKEN_TYPE}")
        if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
            raise TokenError(400, "invalid_request", "only access tokens are issued")
        if "actor_token" in form or "actor_token_type" in form:
            raise TokenError(400, "invalid_request", "actor tokens are not supported: the client acts")
        if "resource" in form:
            raise TokenError(400, "invalid_target", "resource is not supported; name the target in audience")
        try:  # the full policy; aud must contain the client's own audience
            subject = self._validators[client.audience].validate(form["subject_token"])
        except BearerError as err:
            raise TokenError(400, "invalid_grant", f"the subject token is refused: {err.description}") from None
        target = form["audience"]
        allowed = client.may_exchange_for.get(target)
        if allowed is None:
            raise TokenError(400, "invalid_target", "this client may not exchange for that audience")
        grantable = [s for s in allowed if s in subject.scopes]
        requested = list(dict.fromkeys(form["scope"].split())) if form.get("scope") else grantable
        if not set(requested) <= set(grantable):
            raise TokenError(400, "invalid_scope", "more scopes than this client may obtain for this token")
        if len(subject.actors) >= MAX_ACTORS:
            raise TokenError(400, "invalid_grant", "the actor chain is too long")
        lifetime = self._lifetime(subject)
        if lifetime <= 0:
            raise TokenError(400, "invalid_grant", "the subject token has expired")
        issued = TokenIssuer(self.issuer, self.keystore.current(), clock=self.clock).mint(
            sub=subject.subject, audience=target, scopes=requested, client_id=client.client_id,
            ttl=lifetime, act=act_claim((client.client_id, *subject.actors)))
        self.issued += 1
        return {"access_token": issued, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer",
                "expires_in": lifetime, "scope": " ".join(requested)}, requested

    def _authenticate(self, authorization: str | None) -> ExchangeClient:
        scheme, _, encoded = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise TokenError(401, "invalid_client", "client authentication (HTTP Basic) is required")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise TokenError(401, "invalid_client", "malformed client credentials") from None
        raw_id, sep, raw_secret = decoded.partition(":")
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)  # RFC 6749 §2.3.1
        client = self.clients.authenticate(client_id, secret) if sep and client_id else None
        if client is None:
            raise TokenError(401, "invalid_client", "unknown client or wrong secret")
        return client

    def _lifetime(self, subject: AccessToken) -> int:
        if subject.expires_at is None:
            return self.ttl
        return min(self.ttl, int(subject.expires_at - self.clock()))


def _form(request: Request) -> dict[str, str]:
    """The form's parameters, each exactly once (RFC 6749 §3.2: parameters must not repeat)."""
    if request.mimetype != "application/x-www-form-urlencoded":
        raise TokenError(400, "invalid_request", "the request must be application/x-www-form-urlencoded")
    if (request.content_length or 0) > MAX_FORM_BYTES:
        raise TokenError(400, "invalid_request", f"the form is larger than {MAX_FORM_BYTES} bytes")
    body = request.stream.read(MAX_FORM_BYTES + 1)
    if len(body) > MAX_FORM_BYTES:
        raise TokenError(400, "invalid_request", f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise TokenError(400, "invalid_request", "the form is malformed") from None
    repeated = sorted(name for name, values in fields.items() if len(values) > 1)
    if repeated:
        raise TokenError(400, "invalid_request", f"repeated parameter: {repeated[0]}")
    return {name: values[0] for name, values in fields.items()}


def _json(data: Mapping[str, Any], status: int, headers: Mapping[str, str]) -> Response:
    response = Response(json.dumps(data), status=status, mimetype="application/json")
    for name, value in headers.items():
        response.headers[name] = value
    return response
