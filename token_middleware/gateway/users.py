"""The gateway's users: a JSON file of werkzeug password hashes and scopes.

Format (``GATEWAY_USERS_FILE``)::

    {"alice": {"password_hash": "pbkdf2:sha256:600000$...", "scopes": ["orders:read"]}}

Make a hash with ``python -c 'from werkzeug.security import generate_password_hash as g;
print(g("secret"))'``.

What is trusted: the file (the operator's). Usernames and passwords come from clients and are
only ever compared: the password through ``werkzeug.security.check_password_hash`` (salted hash,
``hmac.compare_digest``). An unknown username still costs one hash check against a dummy hash of
the same method, so response time does not tell which usernames exist.

Password hashes are slow on purpose (pbkdf2 with many rounds costs a good fraction of a second),
and HTTP Basic sends the password on every request. So a successful check is remembered for
``cache_ttl`` seconds under ``HMAC-SHA256(per-process random key, username NUL password)``: the
process never keeps a password, and only the exact same credentials hit. Failures are never
cached. The cache is bounded and per process.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from token_middleware.core.errors import ConfigurationError

#: Passwords longer than this are refused without hashing (no hashing-cost amplification).
MAX_PASSWORD_LENGTH = 1024
MAX_USERNAME_LENGTH = 256


@dataclass(frozen=True)
class User:
    """An authenticated user: the token's ``sub`` and ``scope`` come from here."""

    username: str
    scopes: tuple[str, ...]


class UserStore:
    """Users loaded once from a mapping or a file; :meth:`authenticate` checks a password."""

    def __init__(
        self,
        users: Mapping[str, Any],
        *,
        source: str = "users",
        cache_ttl: float = 60.0,
        max_cached: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.cache_ttl = cache_ttl
        self.max_cached = max_cached
        self.clock = clock
        self._cache_key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hash_checks = 0  # password hashes computed (for tests and metrics)
        self._hashes: dict[str, str] = {}
        self._users: dict[str, User] = {}
        if not isinstance(users, Mapping) or not users:
            raise ConfigurationError(
                f"GATEWAY_USERS_FILE: {source} must be a non-empty JSON object of users",
                setting="USERS_FILE",
            )
        for name, entry in users.items():
            self._add(name, entry)
        first_hash = next(iter(self._hashes.values()))
        method = first_hash.split("$", 1)[0]
        # A dummy hash made with the same method (and cost) as the real ones.
        try:
            self._dummy_hash = generate_password_hash(secrets.token_urlsafe(16), method=method)
        except (ValueError, TypeError):
            self._dummy_hash = generate_password_hash(secrets.token_urlsafe(16))

    @classmethod
    def from_file(cls, path: str | Path) -> UserStore:
        """Load ``path``; errors name the file and what is wrong with it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise ConfigurationError(
                f"GATEWAY_USERS_FILE: cannot read {path}: {exc.strerror}", setting="USERS_FILE"
            ) from None
        except ValueError as exc:
            raise ConfigurationError(
                f"GATEWAY_USERS_FILE: {path} is not valid JSON: {exc}", setting="USERS_FILE"
            ) from None
        return cls(data, source=str(path))

    def _add(self, name: object, entry: object) -> None:
        where = f"GATEWAY_USERS_FILE: {self.source}: user {name!r}"
        if (
            not isinstance(name, str)
            or not name
            or len(name) > MAX_USERNAME_LENGTH
            or ":" in name
            or any(ord(c) < 0x20 or c == "\x7f" for c in name)
        ):
            raise ConfigurationError(
                f"{where}: usernames are non-empty, without ':' or control characters",
                setting="USERS_FILE",
            )
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{where}: expected an object", setting="USERS_FILE")
        password_hash = entry.get("password_hash")
        if not isinstance(password_hash, str) or "$" not in password_hash:
            raise ConfigurationError(
                f"{where}: 'password_hash' must be a werkzeug.security hash", setting="USERS_FILE"
            )
        scopes = entry.get("scopes", [])
        if not isinstance(scopes, list) or not all(
            isinstance(s, str) and s and not any(c.isspace() or c in '"\\' for c in s)
            for s in scopes
        ):
            raise ConfigurationError(
                f"{where}: 'scopes' must be a list of scope strings without spaces",
                setting="USERS_FILE",
            )
        self._hashes[name] = password_hash
        self._users[name] = User(name, tuple(dict.fromkeys(scopes)))

    def __contains__(self, username: object) -> bool:
        return username in self._users

    def __len__(self) -> int:
        return len(self._users)

    def get(self, username: str) -> User | None:
        """The user named ``username`` (for a session whose password was checked at login)."""
        return self._users.get(username)

    def all_scopes(self) -> list[str]:
        """Every scope some user has, sorted (for the discovery document)."""
        return sorted({s for u in self._users.values() for s in u.scopes})

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when ``password`` is right, else ``None``; as slow for unknown usernames."""
        if len(password) > MAX_PASSWORD_LENGTH or len(username) > MAX_USERNAME_LENGTH:
            return None
        digest = hmac.digest(
            self._cache_key, f"{username}\0{password}".encode("utf-8", "surrogatepass"), "sha256"
        )
        now = self.clock()
        with self._lock:
            hit = self._verified.get(digest)
            if hit is not None and hit[1] > now and hit[0] == username:
                return self._users.get(username)
        stored = self._hashes.get(username)
        self.hash_checks += 1
        if stored is None:
            check_password_hash(self._dummy_hash, password)
            return None
        if not check_password_hash(stored, password):
            return None
        if self.cache_ttl > 0:
            with self._lock:
                self._verified[digest] = (username, now + self.cache_ttl)
                self._verified.move_to_end(digest)
                while len(self._verified) > self.max_cached:
                    self._verified.popitem(last=False)
        return self._users[username]
