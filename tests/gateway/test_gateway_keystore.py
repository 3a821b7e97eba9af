"""The key store: one key per directory however many processes race, file modes, rotation that
keeps the old public key until its tokens expired, and workers that notice a rotation."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from token_middleware.core.errors import ConfigurationError
from token_middleware.gateway.issuing.keystore import RETENTION_MARGIN, KeyStore


def _open_store(directory: str, barrier: multiprocessing.synchronize.Barrier, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    barrier.wait(30)
    store = KeyStore(directory, alg="ES256")
    queue.put((store.current().kid, store.session_secret().hex()))


def test_racing_processes_create_exactly_one_key(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    ctx = multiprocessing.get_context("spawn")
    workers = 6
    barrier = ctx.Barrier(workers)
    queue = ctx.Queue()
    processes = [ctx.Process(target=_open_store, args=(str(directory), barrier, queue)) for _ in range(workers)]
    for p in processes:
        p.start()
    try:
        results = [queue.get(timeout=60) for _ in processes]
    finally:
        for p in processes:
            p.join(30)
    assert all(p.exitcode == 0 for p in processes)
    assert len(set(results)) == 1, "workers disagree on the signing key or the session secret"
    assert len(list(directory.glob("key-*.pem"))) == 3  # the current key and the two ahead
    assert not list(directory.glob("*.tmp"))


def test_directory_and_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "nested" / "keys"
    KeyStore(directory)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for name in [*(p.name for p in directory.glob("key-*.pem")), "session-secret", "state.json"]:
        assert stat.S_IMODE(os.stat(directory / name).st_mode) == 0o600, name


def test_group_writable_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    os.chmod(directory, 0o770)
    with pytest.raises(ConfigurationError, match="chmod 700"):
        KeyStore(directory)


def test_reopening_keeps_the_key(tmp_path: Path) -> None:
    first = KeyStore(tmp_path / "k").current().kid
    assert KeyStore(tmp_path / "k").current().kid == first


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_rotation_keeps_the_old_public_key_until_its_tokens_expired(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path / "k", token_ttl=300, clock=clock)
    old = store.current().kid
    published_next, published_later = [k["kid"] for k in store.jwks()["keys"] if k["kid"] != old]
    new = store.rotate().kid
    assert new == published_next, "the new key was not published before it signed"
    assert store.current().kid == new
    kids = [k["kid"] for k in store.jwks()["keys"]]
    assert kids[0] == new and kids[1] == published_later and kids[-1] == old and len(kids) == 4
    assert len(list((tmp_path / "k").glob("key-*.pem"))) == 3, "the retired private key was kept"
    clock.now += 300 + RETENTION_MARGIN - 1
    assert old in [k["kid"] for k in store.jwks()["keys"]]
    clock.now += 2
    assert old not in [k["kid"] for k in store.jwks()["keys"]]
    assert len(store.jwks()["keys"]) == 3


def test_other_processes_notice_a_rotation(tmp_path: Path) -> None:
    worker_a = KeyStore(tmp_path / "k", check_interval=0)
    worker_b = KeyStore(tmp_path / "k", check_interval=0)
    assert worker_a.current().kid == worker_b.current().kid
    new = worker_a.rotate().kid
    assert worker_b.current().kid == new
    assert worker_b.jwks() == worker_a.jwks()
    assert len(worker_b.jwks()["keys"]) == 4


def test_a_worker_checks_at_most_once_per_interval(tmp_path: Path) -> None:
    lazy = KeyStore(tmp_path / "k", check_interval=3600)
    before = lazy.current().kid
    KeyStore(tmp_path / "k").rotate()
    assert lazy.current().kid == before  # not re-checked within the interval


def test_rotation_tool_without_settings_keeps_the_gateways_ttl_and_alg(tmp_path: Path) -> None:
    clock = Clock()
    KeyStore(tmp_path / "k", alg="RS256", token_ttl=3600)
    tool = KeyStore(tmp_path / "k", clock=clock)  # what `token-middleware rotate-keys` opens
    assert tool.current().alg == "RS256"
    old = tool.current().kid
    assert tool.rotate().alg == "RS256"
    clock.now += 3600
    assert old in [k["kid"] for k in tool.jwks()["keys"]]


def test_changing_the_algorithm_rotates_once(tmp_path: Path) -> None:
    es = KeyStore(tmp_path / "k", alg="ES256")
    old = es.current().kid
    rs = KeyStore(tmp_path / "k", alg="RS256")
    assert rs.current().alg == "RS256"
    kids = [k["kid"] for k in rs.jwks()["keys"]]
    assert kids[-1] == old and len(kids) == 4
    assert all(k["alg"] == "RS256" for k in rs.jwks()["keys"][:3])
    assert KeyStore(tmp_path / "k", alg="RS256").current().kid == rs.current().kid
    assert rs.algorithms() == ["RS256", "ES256"]


def test_corrupt_state_is_a_configuration_error(tmp_path: Path) -> None:
    KeyStore(tmp_path / "k")
    (tmp_path / "k" / "state.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="state.json"):
        KeyStore(tmp_path / "k")
