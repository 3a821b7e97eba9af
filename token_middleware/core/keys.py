"""Verification keys: where they come from, how they are cached, and how one is chosen.

Trusted: only the configured source — a static file (``PUBLIC_KEYS``: PEM, JWK or JWKS) or the
JWKS at ``JWKS_URL`` (or at the ``jwks_uri`` of ``<ISSUER>/.well-known/openid-configuration``,
whose ``issuer`` must equal the configured one). A token's own ``jku``, ``x5u``, ``jwk`` or
``x5c`` header is never fetched or trusted: a token only *selects* a key, by ``kid`` and ``alg``.

Keys are prepared once per key set (python-jose key objects, built in :mod:`._jose`) and
indexed by ``(kid, alg)``. A key is usable only for the algorithms its type allows (RSA → RS*,
EC P-256 → ES256, P-384 → ES384, P-521 → ES512, oct → HS*) that are also in ``ALGORITHMS``.

The remote source:

* caches a key set for ``JWKS_CACHE_SECONDS``; a ``Cache-Control: max-age`` between
  ``JWKS_MIN_REFRESH_SECONDS`` and that may shorten it;
* refetches at most once per ``JWKS_MIN_REFRESH_SECONDS`` for an unknown ``kid``; concurrent
  threads share that one fetch (single-flight). The throttle runs between *unknown-kid*
  refetches only: the start-up fetch and the scheduled refresh of a stale set do not count, so
  the first token signed by a newly promoted key after start-up (or after a quiet spell) always
  gets its refetch. A flood of tokens with random ``kid`` values still causes at most one fetch per
  ``JWKS_MIN_REFRESH_SECONDS`` (plus the scheduled refresh every ``JWKS_CACHE_SECONDS``). Why
  here: any issuer, ours or a third party's, may sign with a key it published moments ago; the
  first such token after a quiet spell must not wait 30 s. The issuer's side of the guarantee
  (the gateway's keys are published two rotations before they sign) is in
  :mod:`token_middleware.gateway.issuing.keystore`;
* keeps the last good key set when a fetch fails or returns nothing usable;
* tells its watch (:mod:`.observe`) of every fetch attempt, ``ok`` or ``error``, and brackets it
  (and each HTTP GET in it) in a span when a tracer watches;
* bounds every fetch by ``HTTP_TIMEOUT`` (a whole-response deadline, not only per read) and by
  a size limit (the HTTP part, and the discovery document, are in :mod:`.fetching`);
* says why it cannot get keys, in operator terms ("connection refused by 127.0.0.1:9 fetching
  …", "discovery document at … names issuer '…' but ISSUER is '…'"): a WARNING on the
  ``token_middleware.keys`` logger at the first failure (the start-up prefetch), then at most
  once per ``JWKS_MIN_REFRESH_SECONDS`` (5 s at least) for the same cause, an INFO line once
  keys come back, and :attr:`KeysUnavailable.cause`. Values taken from a remote document are
  quoted and shortened before they are logged; the cause never reaches HTTP clients.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from . import _jose
from .errors import ConfigurationError, KeysUnavailable, UnknownKey
# Re-exported (``X as X``): the fetch helpers lived here, and callers import them from here.
from .fetching import (
    MAX_JWKS_BYTES as MAX_JWKS_BYTES,
    FetchError as FetchError,
    Fetcher as Fetcher,
    _host_port as _host_port,
    _max_age as _max_age,
    _network_cause as _network_cause,
    _public_url as _public_url,
    _shown as _shown,
    discovered_url as discovered_url,
    fetch_discovery as fetch_discovery,
    http_get_json as http_get_json,
)
from .observe import KeyFetch, Watch

log = logging.getLogger("token_middleware.keys")

MAX_KEYS = 100

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)
_EC_CURVE_ALG = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


@dataclass(frozen=True, eq=False)
class VerificationKey:
    """A prepared key, usable for exactly one algorithm."""

    kid: str | None
    alg: str
    key: _jose.JoseKey
    #: What the key was built from (canonical JWK JSON and alg), to reuse it across refetches.
    material: str = ""

    def __repr__(self) -> str:
        return f"VerificationKey(kid={self.kid!r}, alg={self.alg!r})"


def _algorithms_for_jwk(jwk: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    kty = jwk.get("kty")
    if kty == "RSA":
        candidates = ["RS256", "RS384", "RS512"]
    elif kty == "EC":
        crv_alg = _EC_CURVE_ALG.get(jwk.get("crv"))  # type: ignore[arg-type]
        candidates = [crv_alg] if crv_alg else []
    elif kty == "oct":
        candidates = ["HS256", "HS384", "HS512"]
    else:
        candidates = []
    declared = jwk.get("alg")
    if declared is not None:
        candidates = [a for a in candidates if a == declared]
    allowed_set = set(allowed)
    return [a for a in candidates if a in allowed_set]


class KeySet:
    """An immutable set of prepared keys, indexed by ``(kid, alg)``."""

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self.keys: tuple[VerificationKey, ...] = tuple(keys)
        index: dict[tuple[str | None, str], list[VerificationKey]] = {}
        by_alg: dict[str, list[VerificationKey]] = {}
        for vk in self.keys:
            index.setdefault((vk.kid, vk.alg), []).append(vk)
            by_alg.setdefault(vk.alg, []).append(vk)
        self._index = {k: tuple(v) for k, v in index.items()}
        self._by_alg = {k: tuple(v) for k, v in by_alg.items()}
        self._members = frozenset(id(vk) for vk in self.keys)
        self._by_material = {vk.material: vk for vk in self.keys if vk.material}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(vk.kid for vk in self.keys if vk.kid is not None)

    def find(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        """Candidates for a token: by ``kid`` when it has one, else every key for ``alg``.

        A token's ``kid`` that no key has falls back to the keys without a ``kid`` (a PEM file,
        a JWK that names none): ``kid`` is optional in RFC 7517.
        """
        if kid is None:
            return self._by_alg.get(alg, ())
        return self._index.get((kid, alg)) or self._index.get((None, alg), ())

    def contains(self, key: VerificationKey) -> bool:
        return id(key) in self._members

    @classmethod
    def from_jwks(cls, document: Any, algorithms: Iterable[str], previous: KeySet | None = None) -> KeySet:
        """Keys from a JWKS document (``{"keys": [...]}``) or a single JWK.

        Keys that are not for signatures, of an unknown type, or for no allowed algorithm are
        skipped; a document that is not a JWKS raises ``ValueError``. Keys unchanged since
        ``previous`` are reused as they are, so tokens they verified stay cached.
        """
        if isinstance(document, Mapping) and "keys" in document:
            entries = document["keys"]
        elif isinstance(document, Mapping) and "kty" in document:
            entries = [document]
        else:
            raise ValueError("not a JWK or JWKS document")
        if not isinstance(entries, list):
            raise ValueError("'keys' is not a list")
        algs = tuple(algorithms)
        keys: list[VerificationKey] = []
        for jwk in entries[:MAX_KEYS]:
            if not isinstance(jwk, Mapping):
                continue
            if jwk.get("use", "sig") != "sig":
                continue
            key_ops = jwk.get("key_ops")
            if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
                continue  # RFC 7517 §4.3: not a verification key
            kid = jwk.get("kid")
            if kid is not None and not isinstance(kid, str):
                continue
            canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":"))
            for alg in _algorithms_for_jwk(jwk, algs):
                material = f"{alg} {canonical}"
                reused = previous._by_material.get(material) if previous is not None else None
                if reused is not None:
                    keys.append(reused)
                    continue
                try:
                    keys.append(VerificationKey(kid, alg, _jose.build_key(jwk, alg), material))
                except ConfigurationError as exc:
                    log.warning("skipping unusable key kid=%r alg=%s: %s", kid, alg, exc)
        return cls(keys)

    @classmethod
    def from_pem(cls, pem: str | bytes, algorithms: Iterable[str], kid: str | None = None) -> KeySet:
        """Keys from PEM text (public keys, certificates or private keys; one or more blocks)."""
        text = pem.decode() if isinstance(pem, bytes) else pem
        blocks = [m.group(0) for m in _PEM_BLOCK.finditer(text)]
        if not blocks:
            raise ValueError("no PEM block found")
        keys: list[VerificationKey] = []
        for block in blocks:
            for alg in algorithms:
                if alg.startswith("HS"):
                    continue
                try:
                    keys.append(VerificationKey(kid, alg, _jose.build_key(block, alg)))
                except ConfigurationError:
                    continue
        # An EC key builds for every ES* in jose; keep only the algorithm matching its curve.
        return cls(k for k in keys if _pem_alg_matches(k))


def _pem_alg_matches(vk: VerificationKey) -> bool:
    curve = _jose.ec_curve_name(vk.key)
    if vk.alg.startswith("ES"):
        return curve is not None and _EC_CURVE_ALG.get(
            {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(curve, "")
        ) == vk.alg
    if vk.alg.startswith("RS"):
        return curve is None
    return True


def load_key_file(path: str, algorithms: Iterable[str]) -> KeySet:
    """A :class:`KeySet` from a PEM, JWK or JWKS file. Raises :class:`ConfigurationError`."""
    algs = tuple(algorithms)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_JWKS_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read PUBLIC_KEYS file {path!r}: {exc.strerror}", setting="PUBLIC_KEYS") from None
    try:
        if data.lstrip().startswith(b"{"):
            keyset = KeySet.from_jwks(json.loads(data), algs)
        else:
            keyset = KeySet.from_pem(data, algs)
    except ValueError as exc:
        raise ConfigurationError(
            f"PUBLIC_KEYS file {path!r} is not a PEM, JWK or JWKS file: {exc}", setting="PUBLIC_KEYS"
        ) from None
    if not keyset:
        raise ConfigurationError(
            f"PUBLIC_KEYS file {path!r} has no key usable with ALGORITHMS={','.join(algs)}",
            setting="PUBLIC_KEYS",
        )
    return keyset


class KeySource(Protocol):
    """Where the validator gets keys from."""

    def find(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        """Candidate keys; raises :class:`UnknownKey` or :class:`KeysUnavailable`."""
        ...

    def contains(self, key: VerificationKey) -> bool:
        """Whether ``key`` is still in the current key set (for the verified-token cache)."""
        ...

    def prefetch(self) -> None:
        """Obtain keys now if that makes sense; never raises."""
        ...


class StaticKeySource:
    """Keys loaded once from configuration."""

    def __init__(self, keyset: KeySet) -> None:
        self.keyset = keyset

    def find(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        found = self.keyset.find(kid, alg)
        if not found:
            raise UnknownKey()
        return found

    def contains(self, key: VerificationKey) -> bool:
        return self.keyset.contains(key)

    def prefetch(self) -> None:
        return None


class _State:
    __slots__ = ("keyset", "fresh_until")

    def __init__(self, keyset: KeySet, fresh_until: float) -> None:
        self.keyset = keyset
        self.fresh_until = fresh_until


class RemoteKeySource:
    """A JWKS fetched over HTTP(S), from ``jwks_url`` or discovered from ``issuer``.

    A failed fetch is logged at WARNING on ``token_middleware.keys`` with its cause
    (:attr:`last_error`): the first time, when the cause changes, and then at most once per
    :attr:`warning_interval` for the same cause (repeats go to DEBUG). The first fetch that
    succeeds after failures is logged at INFO. :class:`KeysUnavailable` carries the cause too.
    """

    def __init__(
        self,
        *,
        algorithms: Iterable[str],
        jwks_url: str | None = None,
        issuer: str | None = None,
        cache_seconds: int = 300,
        min_refresh_seconds: int = 30,
        timeout: float = 5.0,
        fetch: Fetcher = http_get_json,
        clock: Callable[[], float] = time.monotonic,
        watch: Watch | None = None,
    ) -> None:
        if jwks_url is None and issuer is None:
            raise ConfigurationError("a remote key source needs JWKS_URL or ISSUER (for discovery)")
        self.algorithms = tuple(algorithms)
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout = timeout
        self._fetch = fetch
        self._clock = clock
        self._state: _State | None = None
        self._lock = threading.Lock()
        self._last_attempt: float | None = None  # the last fetch of any kind
        self._last_forced: float | None = None  # the last fetch asked for by an unknown kid
        #: Why the last fetch failed, in operator terms; ``None`` once a fetch succeeds.
        self.last_error: str | None = None
        #: Least time between two WARNING lines for the same cause.
        self.warning_interval = max(5, min_refresh_seconds)
        self._failures = 0  # failed fetches since keys were last obtained
        self._warned: dict[str, float] = {}  # cause -> when it was last logged at WARNING
        #: Number of HTTP fetches of the key set (successful or not): for tests and benchmarks.
        self.fetch_count = 0
        #: Told of every fetch attempt (:class:`~.observe.KeyFetch`), in spans too; ``None``: nobody.
        self.watch = watch
        self._last_url: str | None = None  # the document the current attempt asked for last

    @property
    def retry_after(self) -> int:
        return max(1, min(5, self.min_refresh_seconds))

    @property
    def keyset(self) -> KeySet | None:
        state = self._state
        return state.keyset if state else None

    def find(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        state = self._state
        now = self._clock()
        if state is None:
            state = self._refresh(now, force=False)
            if state is None:
                raise KeysUnavailable(retry_after=self.retry_after, cause=self.last_error)
        elif now >= state.fresh_until:
            # Stale: one thread refreshes, the others go on with the set they have.
            if self._lock.acquire(blocking=False):
                try:
                    state = self._refresh_locked(now) or state
                finally:
                    self._lock.release()
        found = state.keyset.find(kid, alg)
        if found or kid is None:
            if not found:
                raise UnknownKey()
            return found
        # Unknown kid: maybe the issuer rotated. Refetch, at most once per min interval.
        refreshed = self._refresh(now, force=True)
        if refreshed is not None:
            found = refreshed.keyset.find(kid, alg)
        if not found:
            raise UnknownKey()
        return found

    def contains(self, key: VerificationKey) -> bool:
        state = self._state
        return state is not None and state.keyset.contains(key)

    def prefetch(self) -> None:
        try:
            self._refresh(self._clock(), force=False)
        except Exception:  # noqa: BLE001 - start-up warm-up must never take the app down
            log.exception("key prefetch failed")

    # -- fetching ---------------------------------------------------------------------------

    def _throttled(self, now: float, force: bool = False) -> bool:
        if self._state is None:
            # Without any key set, retry sooner (Retry-After), still never more than that rate.
            last, interval = self._last_attempt, self.retry_after
        elif force:
            # Unknown kid: only the previous unknown-kid refetch counts, not the start-up fetch
            # or a scheduled refresh (a key promoted seconds after them must not wait 30 s).
            last, interval = self._last_forced, self.min_refresh_seconds
        else:
            last, interval = self._last_attempt, self.min_refresh_seconds
        return last is not None and now - last < min(interval, self.min_refresh_seconds)

    def _refresh(self, now: float, *, force: bool) -> _State | None:
        """Fetch unless throttled; concurrent callers wait for one fetch and share its result."""
        if self._throttled(now, force) and not self._lock.locked():
            return self._state  # no fetch in flight: answer at once with what we have
        with self._lock:
            # Another thread may have fetched while we waited for the lock.
            if self._throttled(self._clock(), force):
                return self._state
            last = self._last_attempt
            if force and self._state is not None and last is not None and last > now:
                return self._state  # a fetch began after we were asked: its keys are the newest
            if not force and self._state is not None and self._clock() < self._state.fresh_until:
                return self._state
            return self._refresh_locked(self._clock(), force)

    def _refresh_locked(self, now: float, force: bool = False) -> _State | None:
        if self._throttled(now, force) and self._state is not None:
            return self._state
        self._last_attempt = now
        if force and self._state is not None:
            self._last_forced = now
        self.fetch_count += 1
        watch = self.watch
        if watch is None:
            return self._fetch_keys(now)[0]
        spans = watch.start("token_middleware.fetch_keys")
        started = time.perf_counter()
        try:
            state, failure = self._fetch_keys(now)
        except BaseException as exc:
            watch.finish(spans, None, exc)
            raise
        if failure is None:
            event = KeyFetch("ok", _public_url(self._last_url), time.perf_counter() - started, 200)
        else:
            status = failure.status if isinstance(failure, FetchError) else None
            event = KeyFetch("error", _public_url(self._last_url), time.perf_counter() - started, status,
                             str(failure) or type(failure).__name__)
        watch.finish(spans, event)
        watch.emit(event)
        return state

    def _get(self, url: str, timeout: float, document: str = "jwks") -> tuple[Any, str | None]:
        """One GET through the fetcher; in an HTTP client span when a tracer watches."""
        self._last_url = url
        watch = self.watch
        if watch is None or not watch.tracers:
            return self._fetch(url, timeout)
        shown = _public_url(url) or ""
        spans = watch.start("GET", {"http.request.method": "GET", "url.full": shown,
                                    "token_middleware.document": document})
        started = time.perf_counter()
        try:
            result = self._fetch(url, timeout)
        except FetchError as exc:
            watch.finish(spans, KeyFetch("error", shown, time.perf_counter() - started, exc.status, str(exc), document))
            raise
        except BaseException as exc:
            watch.finish(spans, None, exc)
            raise
        watch.finish(spans, KeyFetch("ok", shown, time.perf_counter() - started, 200, None, document))
        return result

    def _get_discovery(self, url: str, timeout: float) -> tuple[Any, str | None]:
        return self._get(url, timeout, "discovery")

    def _fetch_keys(self, now: float) -> tuple[_State | None, FetchError | ValueError | None]:
        """One attempt: (the state to use, why this attempt failed or ``None``)."""
        try:
            url = self.jwks_url or self._discover()
            document, cache_control = self._get(url, self.timeout)
            try:
                keyset = KeySet.from_jwks(document, self.algorithms, self.keyset)
            except ValueError as exc:
                raise FetchError(f"the document at {url} is not a JWKS ({exc})") from None
            if not keyset:
                listed = _listed_keys(document)
                raise FetchError(
                    f"the JWKS at {url} has no usable key for algorithms {', '.join(self.algorithms)}"
                    f" ({listed or 'it lists no keys'})" + (": check ALGORITHMS" if listed else "")
                )
        except (FetchError, ValueError) as exc:
            self._report_failure(str(exc) or type(exc).__name__, now)
            return self._state, exc
        ttl = self.cache_seconds
        max_age = _max_age(cache_control)
        if max_age is not None:
            ttl = min(ttl, max(max_age, min(self.min_refresh_seconds, self.cache_seconds)))
        state = _State(keyset, self._clock() + ttl)
        previous = self._state
        self._state = state
        if self._failures:
            log.info("token signing keys available again from %s after %d failed fetch(es): kids=%s",
                     url, self._failures, sorted(keyset.kids))
            self._failures, self.last_error = 0, None
            self._warned.clear()
        elif previous is None or previous.keyset.kids != keyset.kids:
            log.info("key set loaded: kids=%s", sorted(keyset.kids))
        return state, None

    def _report_failure(self, cause: str, now: float) -> None:
        """Remember ``cause``; log it at WARNING unless the same cause was logged just now."""
        self.last_error = cause
        self._failures += 1
        last = self._warned.get(cause)
        if last is not None and now - last < self.warning_interval:
            log.debug("fetching the token signing keys failed again: %s", cause)
            return
        if len(self._warned) >= 16:
            self._warned.clear()
        self._warned[cause] = now
        again = f" ({self._failures} failed fetches in a row)" if self._failures > 1 else ""
        if self._state is None:
            log.warning("cannot get the token signing keys%s, requests with a token get 503: %s", again, cause)
        else:
            log.warning("cannot refresh the token signing keys%s, keeping the last good key set: %s",
                        again, cause)

    def _discover(self) -> str:
        assert self.issuer is not None
        url, document = fetch_discovery(self.issuer, self._get_discovery, self.timeout)
        jwks_uri = discovered_url(document, "jwks_uri", url)
        self.jwks_url = jwks_uri
        return jwks_uri


def _word(value: Any) -> str:
    """A short printable word from a remote document (a JWK's ``kty``, ``crv``, …)."""
    return "".join(ch for ch in str(value)[:20] if ch.isprintable() and not ch.isspace()) or "?"


def _listed_keys(document: Any) -> str:
    """What a JWKS lists, in a few words ("it lists 2 keys: EC P-384, oct use enc"); "" if none."""
    entries = document.get("keys") if isinstance(document, Mapping) and "keys" in document else [document]
    if not isinstance(entries, list) or not entries:
        return ""
    kinds = []
    for jwk in entries[:5]:
        if not isinstance(jwk, Mapping):
            kinds.append("not a JWK")
            continue
        words = [_word(jwk.get("kty", "no kty"))]
        words += [_word(jwk[k]) for k in ("crv", "alg") if isinstance(jwk.get(k), str)]
        if jwk.get("use", "sig") != "sig":
            words.append(f"use {_word(jwk.get('use'))}")
        kinds.append(" ".join(words))
    more = ", ..." if len(entries) > 5 else ""
    return f"it lists {len(entries)} key{'s' if len(entries) != 1 else ''}: {', '.join(kinds)}{more}"
