"""Test helpers for the core suite: a controllable JWKS server on loopback and a token forge.

Self-contained on purpose (standard library, ``cryptography`` and ``token_middleware.core.issuer``
only), so other test directories can reuse it::

    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location("core_support", pathlib.Path(...) / "tests/core/_support.py")

``JWKSServer`` is a real ``ThreadingHTTPServer`` on 127.0.0.1 and a free port. It serves
``/.well-known/openid-configuration`` and ``/jwks`` (``/jwks.json`` too) and can be told to
rotate keys or misbehave (``mode``: ``ok``, ``500``, ``garbage``, ``html``, ``empty``,
``hang``, ``slow``, ``flap``, ``huge``). It counts every request by path, on the server side.

``forge`` builds compact JWS strings from arbitrary headers, payloads and signatures: JSON
dicts, raw bytes (duplicate names, NaN, deep nesting) or already-encoded segments, signed for
real with a :class:`~token_middleware.core.issuer.SigningKey` or with any HMAC secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from token_middleware.core.issuer import SigningKey, TokenIssuer, jwks_document

ISSUER = "https://issuer.test"
AUDIENCE = "orders-service"
NOW = 1_700_000_000.0

MODES = ("ok", "500", "garbage", "html", "empty", "hang", "slow", "flap", "huge")

# --------------------------------------------------------------------------------------------
# Token forge
# --------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Canonical, unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Lenient decoding, for reading tokens in tests (never for the code under test)."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _segment(part: Mapping[str, Any] | bytes | str) -> str:
    if isinstance(part, str):
        return part  # already encoded (or deliberately broken)
    if isinstance(part, bytes):
        return b64url(part)
    return b64url(json.dumps(dict(part), separators=(",", ":")).encode())


_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_HASHLIB = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


@functools.lru_cache(maxsize=64)
def _private_key(pem: bytes) -> Any:
    # Loading an RSA key checks it (tens of milliseconds): do it once per key.
    return serialization.load_pem_private_key(pem, password=None)


def raw_signature(key: SigningKey, signing_input: bytes, alg: str | None = None) -> bytes:
    """The JWS signature of ``signing_input`` with ``key`` (``alg`` defaults to the key's)."""
    alg = alg or key.alg
    private = _private_key(key.private_pem())
    digest = _HASHES[alg[2:]]()
    if isinstance(private, rsa.RSAPrivateKey):
        return private.sign(signing_input, padding.PKCS1v15(), digest)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        der = private.sign(signing_input, ec.ECDSA(digest))
        r, s = decode_dss_signature(der)
        size = (private.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise TypeError(f"unsupported key {type(private).__name__}")


def hmac_signature(secret: bytes, signing_input: bytes, alg: str = "HS256") -> bytes:
    return hmac.new(secret, signing_input, _HASHLIB[alg[2:]]).digest()


def forge(
    header: Mapping[str, Any] | bytes | str,
    payload: Mapping[str, Any] | bytes | str,
    *,
    key: SigningKey | None = None,
    secret: bytes | None = None,
    signature: bytes | str | None = None,
    alg: str | None = None,
) -> str:
    """A compact JWS ``header.payload.signature``.

    ``header``/``payload``: a dict (JSON-encoded compactly), raw bytes (base64url-encoded as
    is) or a str (used verbatim as the segment). The signature is, in order of preference:
    ``signature`` (bytes are encoded, a str is used verbatim), an HMAC with ``secret``, a real
    signature by ``key`` (with ``alg`` or the key's own algorithm), or empty.
    """
    signing_input = f"{_segment(header)}.{_segment(payload)}"
    if signature is not None:
        sig = signature if isinstance(signature, str) else b64url(signature)
    elif secret is not None:
        hs_alg = alg or (header.get("alg", "HS256") if isinstance(header, Mapping) else "HS256")
        sig = b64url(hmac_signature(secret, signing_input.encode(), hs_alg))
    elif key is not None:
        sig = b64url(raw_signature(key, signing_input.encode(), alg))
    else:
        sig = ""
    return f"{signing_input}.{sig}"


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Header, payload and signature of a well-formed token (for building variants)."""
    h, p, s = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p)), b64url_decode(s)


# --------------------------------------------------------------------------------------------
# JWKS server
# --------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        cache_control = self.server.owner.cache_control
        if cache_control and status == 200:
            self.send_header("Cache-Control", cache_control)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        owner = self.server.owner
        path = urlsplit(self.path).path
        owner._record(path)
        if path == "/.well-known/openid-configuration":
            doc = {"issuer": owner.discovery_issuer or owner.url, "jwks_uri": owner.url + "/jwks"}
            self._send(200, json.dumps(doc).encode())
            return
        if path not in ("/jwks", "/jwks.json"):
            self._send(404, b'{"error":"not found"}')
            return
        if owner.delay and owner._release.wait(owner.delay):
            return
        mode = owner.mode
        if mode == "flap":
            mode = "ok" if owner.count(path) % 2 == 1 else "500"
        if mode == "ok":
            self._send(200, json.dumps(owner.document()).encode())
        elif mode == "500":
            self._send(500, b"internal error")
        elif mode == "garbage":
            self._send(200, b"\x00\xff{not json at all")
        elif mode == "html":
            self._send(200, b"<!doctype html><h1>Login required</h1>", "text/html")
        elif mode == "empty":
            self._send(200, b'{"keys": []}')
        elif mode == "huge":
            padding_keys = [{"kty": "oct", "use": "enc", "k": "A" * 1000}] * 700
            self._send(200, json.dumps({"keys": owner.document()["keys"] + padding_keys}).encode())
        elif mode == "hang":
            owner._release.wait(owner.hang_seconds)
        elif mode == "slow":
            body = json.dumps(owner.document()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    if owner._release.wait(owner.trickle_interval):
                        return
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
            except OSError:
                return
        else:  # pragma: no cover - guarded by JWKSServer.mode's setter
            self._send(500, b"unknown mode")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: JWKSServer


class JWKSServer:
    """A JWKS + discovery server on 127.0.0.1 that tests can steer. Use as a context manager."""

    def __init__(self, keys: list[SigningKey] | None = None) -> None:
        self._keys: list[SigningKey] = list(keys or [])
        self._mode = "ok"
        self.cache_control: str | None = None
        self.discovery_issuer: str | None = None  # default: the server's own base URL
        self.hang_seconds = 30.0
        self.trickle_interval = 0.05
        self.delay = 0.0  # seconds to wait before answering a key-set request (a slow but working server)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> JWKSServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import socket

        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("JWKS server did not start") from None
                time.sleep(0.01)

    def stop(self) -> None:
        self._release.set()  # let hanging/trickling handlers finish
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = None

    def __enter__(self) -> JWKSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, usable as an ISSUER for discovery."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return self.url + "/jwks"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._mode = value

    def rotate(self, keys: list[SigningKey]) -> None:
        """Serve ``keys`` from now on."""
        with self._lock:
            self._keys = list(keys)

    def document(self) -> dict[str, Any]:
        with self._lock:
            return jwks_document(self._keys)

    # -- request accounting -----------------------------------------------------------------

    def _record(self, path: str) -> None:
        with self._lock:
            self._counts[path] += 1

    def count(self, path: str | None = "/jwks") -> int:
        """Requests received for ``path`` (``None``: all paths)."""
        with self._lock:
            if path is None:
                return sum(self._counts.values())
            return self._counts[path]

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()


@contextmanager
def running_jwks_server(keys: list[SigningKey] | None = None) -> Iterator[JWKSServer]:
    server = JWKSServer(keys)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FakeClock:
    """A settable clock: ``clock()`` returns ``clock.now``; ``clock.advance(s)``."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Kit:
    """Everything a policy case needs to build its token."""

    key: SigningKey
    other: SigningKey  # an untrusted key with the same kid and algorithm
    clock: FakeClock

    @property
    def now(self) -> int:
        return int(self.clock.now)

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Valid RFC 9068 claims; ``name=None`` removes a claim."""
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "alice",
            "aud": [AUDIENCE, "customers-service"],
            "client_id": "gateway",
            "iat": self.now,
            "exp": self.now + 300,
            "jti": "jti-1",
            "scope": "orders:read orders:write",
        }
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def header(self, **changes: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": self.key.alg, "typ": "at+jwt", "kid": self.key.kid}
        for name, value in changes.items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return header

    def token(self, header: Any = None, payload: Any = None, **kwargs: Any) -> str:
        """A token signed for real by the trusted key (unless kwargs say otherwise)."""
        kwargs.setdefault("key", self.key)
        return forge(self.header() if header is None else header, self.claims() if payload is None else payload, **kwargs)

    def issuer(self) -> TokenIssuer:
        return TokenIssuer(ISSUER, self.key, clock=self.clock)
