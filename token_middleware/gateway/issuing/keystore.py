"""The gateway's signing keys on disk, shared by every worker process of one gateway.

Layout of the keys directory (created ``0700``; every file ``0600``)::

    state.json          {"current": {"kid", "alg", "file", "jwk"}, "ahead": [{...same...}, ...],
                         "next": <ahead[0], for gateways from before "ahead">,
                         "previous": [{"kid", "jwk", "drop_after"}], "max_token_ttl": 300}
    key-<kid>.pem       the current and the ahead private keys (PKCS#8 PEM); retired ones are deleted
    session-secret      32 random bytes: the HMAC key of the session cookie and CSRF tokens
    .lock               fcntl lock: exclusive while creating or rotating, shared while reading

What is trusted: the directory and its files, which only the gateway's user can write. Nothing
here reads a request.

Every worker of a gateway must sign with the same key, so the first process creates it under the
exclusive lock and publishes it with an atomic rename; the others wait on the lock and load it.
The rotation rule: keys are published :data:`KEYS_AHEAD` (2) rotations before they sign. The
JWKS holds the current key and the two keys ahead; :meth:`KeyStore.rotate` promotes the oldest
key ahead, which has been in the JWKS since two rotations ago (or since the directory was
created), and publishes a new one behind it. Why two and not one: services learn keys by
fetching the JWKS, and throttle the fetch an unknown ``kid`` triggers to one per
``JWKS_MIN_REFRESH_SECONDS`` (30 s). With one key ahead, two rotations seconds apart promoted
a key published seconds earlier, which a service that last fetched at start-up could not know,
and its refetch could already have been spent (on the start-up fetch by older versions, on a
flood of random ``kid`` values by anyone): up to 30 s of 401s. With two ahead, a service that
fetched at any time since the rotation before last knows the key the next *two* rotations
promote, without any refetch; a third rotation in quick succession costs one refetch, which our
validator always allows (:mod:`token_middleware.core.keys`: the start-up and scheduled fetches
do not count against the throttle) and which learns two keys ahead again: up to five rotations
within ``JWKS_MIN_REFRESH_SECONDS`` refuse nothing. The rule holds for any validator that
caches a JWKS, ours or not, and costs nothing but one more public key in the document; a
deferred schedule ("a key signs N seconds after publication") would guarantee more but make
``rotate-keys`` not rotate when asked to. Rotation keeps the previous public key in the JWKS
until every token it signed has expired (``token_ttl`` + a margin that covers validator leeway
and the time other workers take to notice). Workers notice
a rotation done by another process by a ``stat`` of ``state.json`` at most once per
``check_interval`` seconds, and switch without a restart.

Example::

    store = KeyStore("/var/lib/gateway/keys", alg="ES256", token_ttl=300)
    store.current().kid;  store.jwks();  store.rotate()
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from token_middleware.core.errors import ConfigurationError
from token_middleware.core.issuer import SigningKey

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
SECRET_FILE = "session-secret"
LOCK_FILE = ".lock"

#: Seconds a retired public key stays published beyond ``token_ttl``: validator leeway (30 s by
#: default), the check interval of other workers, and slack for slow call chains.
RETENTION_MARGIN = 120
DEFAULT_ALG = "ES256"
#: Keys published ahead of use: a promoted key was published this many rotations earlier.
KEYS_AHEAD = 2


@dataclass(frozen=True)
class RetiredKey:
    """A previous key: only its public JWK, published until ``drop_after`` (epoch seconds)."""

    kid: str
    jwk: dict[str, Any]
    drop_after: float


@dataclass(frozen=True)
class _Loaded:
    current: SigningKey
    ahead_jwks: tuple[dict[str, Any], ...]
    previous: tuple[RetiredKey, ...]
    signature: tuple[int, int, int]


class KeyStore:
    """Signing keys in ``directory``: created on first use, rotated on request, shared on disk.

    ``alg`` is the gateway's algorithm: a new directory gets a key of that algorithm (``ES256``
    when ``None``); if the stored current key has another one, the store rotates once to a key of
    ``alg``. ``None`` (what ``token-middleware rotate-keys`` uses) keeps the stored algorithm.
    ``token_ttl`` is the lifetime of the tokens signed; the largest ``token_ttl`` any gateway has
    opened the directory with is recorded, so a rotation by a tool that does not know the
    gateway's setting still keeps old keys long enough. ``clock`` (wall time) and
    ``check_interval`` are injectable for tests.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        alg: str | None = None,
        token_ttl: int = 300,
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.alg = alg
        self.token_ttl = token_ttl
        self.check_interval = check_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._last_check = float("-inf")
        self._secret: bytes | None = None
        self._prepare_directory()
        with self._file_lock(exclusive=True):
            self._ensure_key()
            self._ensure_secret()
        self._loaded = self._load()

    # -- public API -------------------------------------------------------------------------------

    def current(self) -> SigningKey:
        """The key to sign with now (reloaded if another process rotated)."""
        return self._state().current

    def previous(self) -> tuple[RetiredKey, ...]:
        """Retired keys whose public half is still published."""
        now = self.clock()
        return tuple(k for k in self._state().previous if k.drop_after > now)

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: the current public key first, then the keys ahead (published
        before use, the next one first), then retired ones whose tokens may still be alive."""
        state = self._state()
        keys = [dict(state.current.public_jwk())]
        keys.extend(dict(jwk) for jwk in state.ahead_jwks)
        keys.extend(dict(k.jwk) for k in self.previous())
        return {"keys": keys}

    def algorithms(self) -> list[str]:
        """Every ``alg`` in the published key set, current first, without duplicates."""
        algs: list[str] = []
        for jwk in self.jwks()["keys"]:
            alg = jwk.get("alg")
            if isinstance(alg, str) and alg not in algs:
                algs.append(alg)
        return algs

    def rotate(self) -> SigningKey:
        """Make a new current key; keep the old public key until its tokens have expired."""
        with self._file_lock(exclusive=True):
            key = self._rotate_locked()
        with self._lock:
            self._loaded = self._load()
            self._last_check = time.monotonic()
        return key

    def session_secret(self) -> bytes:
        """The HMAC key for session cookies and CSRF tokens, identical in every worker."""
        if self._secret is None:
            self._secret = (self.directory / SECRET_FILE).read_bytes()
        return self._secret

    # -- loading and change detection -----------------------------------------------------------

    def _state(self) -> _Loaded:
        now = time.monotonic()
        if now - self._last_check < self.check_interval:
            return self._loaded
        with self._lock:
            if now - self._last_check >= self.check_interval:
                self._last_check = now
                if self._signature() != self._loaded.signature:
                    self._loaded = self._load()
                    log.info("gateway signing key reloaded: kid=%s", self._loaded.current.kid)
        return self._loaded

    def _signature(self) -> tuple[int, int, int]:
        st = os.stat(self.directory / STATE_FILE)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> _Loaded:
        with self._file_lock(exclusive=False):
            signature = self._signature()
            state = self._read_state()
            current = state["current"]
            pem = (self.directory / current["file"]).read_bytes()
            key = SigningKey.from_pem(pem, current["alg"], kid=current["kid"])
            previous = tuple(
                RetiredKey(p["kid"], dict(p["jwk"]), float(p["drop_after"]))
                for p in state.get("previous", [])
            )
            ahead = tuple(dict(entry["jwk"]) for entry in _ahead(state))
        return _Loaded(key, ahead, previous, signature)

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.directory / STATE_FILE).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"GATEWAY_KEYS_DIR: cannot read {self.directory / STATE_FILE}: {exc}",
                setting="KEYS_DIR",
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("current"), dict):
            raise ConfigurationError(
                f"GATEWAY_KEYS_DIR: {self.directory / STATE_FILE} is not a key state file",
                setting="KEYS_DIR",
            )
        return data

    # -- creation and rotation (under the exclusive lock) -----------------------------------------

    def _prepare_directory(self) -> None:
        try:
            if not self.directory.exists():
                self.directory.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):
                    self.directory.mkdir(mode=0o700)
                    os.chmod(self.directory, 0o700)
            st = os.stat(self.directory)
        except OSError as exc:
            raise ConfigurationError(
                f"GATEWAY_KEYS_DIR: cannot create {self.directory}: {exc.strerror}",
                setting="KEYS_DIR",
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigurationError(
                f"GATEWAY_KEYS_DIR: {self.directory} is not a directory", setting="KEYS_DIR"
            )
        if st.st_mode & 0o022:
            raise ConfigurationError(
                f"GATEWAY_KEYS_DIR: {self.directory} is writable by group or others; "
                f"run chmod 700 {self.directory}",
                setting="KEYS_DIR",
            )

    @contextlib.contextmanager
    def _file_lock(self, *, exclusive: bool) -> Iterator[None]:
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _ensure_key(self) -> None:
        if not (self.directory / STATE_FILE).exists():
            key = SigningKey.generate(self.alg or DEFAULT_ALG)
            self._write_private(key)
            self._write_state(
                {
                    "current": self._entry(key),
                    "ahead": self._new_keys(key.alg, KEYS_AHEAD),
                    "previous": [],
                    "max_token_ttl": self.token_ttl,
                }
            )
            log.info("gateway signing key created: kid=%s alg=%s", key.kid, key.alg)
            return
        state = self._read_state()
        changed = False
        if int(state.get("max_token_ttl", 0)) < self.token_ttl:
            state["max_token_ttl"] = self.token_ttl
            changed = True
        ahead = _ahead(state)
        if len(ahead) < KEYS_AHEAD:  # a directory from before keys ahead, or from before two
            state["ahead"] = ahead + self._new_keys(state["current"]["alg"], KEYS_AHEAD - len(ahead))
            changed = True
        if changed:
            self._write_state(state)
        if self.alg is not None and state["current"].get("alg") != self.alg:
            log.warning(
                "gateway key algorithm changed from %s to %s: rotating",
                state["current"].get("alg"),
                self.alg,
            )
            self._rotate_locked()

    def _ensure_secret(self) -> None:
        if not (self.directory / SECRET_FILE).exists():
            self._atomic_write(SECRET_FILE, secrets.token_bytes(32))

    def _rotate_locked(self) -> SigningKey:
        state = self._read_state()
        old = state["current"]
        old_pem_path = self.directory / old["file"]
        old_key = SigningKey.from_pem(old_pem_path.read_bytes(), old["alg"], kid=old["kid"])
        now = self.clock()
        ttl = max(self.token_ttl, int(state.get("max_token_ttl", 0)))
        drop_after = now + ttl + RETENTION_MARGIN
        previous = [p for p in state.get("previous", []) if float(p["drop_after"]) > now]
        previous.insert(
            0, {"kid": old_key.kid, "jwk": dict(old_key.public_jwk()), "drop_after": drop_after}
        )
        alg = self.alg or old["alg"]
        stale_files = [old_pem_path]
        ahead = []
        for entry in _ahead(state):
            if entry.get("alg") == alg:
                ahead.append(entry)
            else:  # published for another algorithm: never used (and its private key dropped)
                stale_files.append(self.directory / entry["file"])
        if ahead:
            upcoming = ahead.pop(0)
            key = SigningKey.from_pem((self.directory / upcoming["file"]).read_bytes(), alg,
                                      kid=upcoming["kid"])
        else:  # no published key of the wanted algorithm: a fresh one
            key = SigningKey.generate(alg)
            self._write_private(key)
        ahead += self._new_keys(alg, KEYS_AHEAD - len(ahead))
        self._write_state(
            {
                "current": self._entry(key),
                "ahead": ahead,
                "previous": previous,
                "max_token_ttl": ttl,
            }
        )
        for path in stale_files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        log.info("gateway signing key rotated: kid=%s -> kid=%s", old_key.kid, key.kid)
        return key

    @staticmethod
    def _entry(key: SigningKey) -> dict[str, Any]:
        return {"kid": key.kid, "alg": key.alg, "file": _pem_name(key.kid), "jwk": key.public_jwk()}

    def _new_keys(self, alg: str, count: int) -> list[dict[str, Any]]:
        """``count`` new private keys of ``alg`` on disk, as state entries."""
        entries = []
        for _ in range(max(0, count)):
            key = SigningKey.generate(alg)
            self._write_private(key)
            entries.append(self._entry(key))
        return entries

    def _write_private(self, key: SigningKey) -> None:
        pem = key.private_pem()
        self._atomic_write(_pem_name(key.kid), pem.encode("ascii") if isinstance(pem, str) else pem)

    def _write_state(self, state: dict[str, Any]) -> None:
        ahead = state.get("ahead")
        if isinstance(ahead, list) and ahead:
            state["next"] = ahead[0]  # what a gateway from before "ahead" reads
        else:
            state.pop("next", None)
        self._atomic_write(STATE_FILE, json.dumps(state, indent=2, sort_keys=True).encode("utf-8"))

    def _atomic_write(self, name: str, data: bytes) -> None:
        target = self.directory / name
        tmp = self.directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise


def _ahead(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The published keys ahead of use, next first (``"next"`` in directories from before.)"""
    ahead = state.get("ahead")
    upcoming = state.get("next")
    if isinstance(ahead, list):
        entries = [e for e in ahead if isinstance(e, dict)]
        if not isinstance(upcoming, dict) or (entries and entries[0].get("kid") == upcoming.get("kid")):
            return entries
        # "next" disagrees: a gateway from before "ahead" rotated last, and only "next" is live.
    return [upcoming] if isinstance(upcoming, dict) else []


def _pem_name(kid: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in kid)
    return f"key-{safe}.pem"
