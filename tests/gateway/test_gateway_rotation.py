"""Rotations of a shared keys directory, seen by a service with the default settings.

Two gateway replicas (two :class:`KeyStore` on one directory, as two hosts on a shared volume)
publish the JWKS behind a round-robin "load balancer" on loopback; a third store is
``token-middleware rotate-keys``. The service's key source has a fake monotonic clock, the
stores and the validator one fake wall clock: nothing sleeps. The rule under test is the
keystore's (a promoted key was published two rotations earlier), with the service's
(the first unknown-kid refetch is never spent by the start-up fetch) behind it.
"""

from __future__ import annotations

import itertools
import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "core"))
from _support import FakeClock  # noqa: E402

from token_middleware.core.errors import UnknownKey  # noqa: E402
from token_middleware.core.issuer import SigningKey, TokenIssuer  # noqa: E402
from token_middleware.core.keys import RemoteKeySource  # noqa: E402
from token_middleware.core.settings import Settings  # noqa: E402
from token_middleware.core.validator import TokenValidator  # noqa: E402
from token_middleware.gateway.issuing.keystore import KeyStore  # noqa: E402
from token_middleware.testing.servers import _Handler, _Loopback  # noqa: E402

ISSUER = "http://gateway.test"
AUDIENCE = "orders-service"


class Balancer(_Loopback):
    """``/jwks`` answered by each replica in turn."""

    def __init__(self, replicas: list[KeyStore]) -> None:
        super().__init__()
        self._next = itertools.cycle(replicas)

    def _get(self, handler: _Handler) -> None:
        self._count("/jwks")
        with self._lock:
            replica = next(self._next)
        handler.send(200, json.dumps(replica.jwks()).encode())

    @property
    def fetches(self) -> int:
        return self.requests.get("/jwks", 0)


class World:
    def __init__(self, directory: Path) -> None:
        self.wall = FakeClock()
        self.mono = FakeClock(5000.0)
        self.replicas = [KeyStore(directory, token_ttl=300, check_interval=0, clock=self.wall) for _ in range(2)]
        self.tool = KeyStore(directory, clock=self.wall)  # what rotate-keys opens
        self.balancer = Balancer(self.replicas).start()
        url = self.balancer.url + "/jwks"
        settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "JWKS_URL": url})
        source = RemoteKeySource(algorithms=settings.algorithms, jwks_url=url,
                                 cache_seconds=settings.jwks_cache_seconds,
                                 min_refresh_seconds=settings.jwks_min_refresh_seconds, clock=self.mono)
        self.validator = TokenValidator(settings, keys=source, clock=self.wall)
        source.prefetch()
        self.refused = self.accepted = 0
        self.kids: set[str] = set()

    def tick(self) -> None:
        self.wall.advance(1)
        self.mono.advance(1)

    def load(self, per_replica: int = 2) -> None:
        for replica in self.replicas:
            for _ in range(per_replica):
                key = replica.current()
                self.kids.add(key.kid)
                self.validate(TokenIssuer(ISSUER, key, clock=self.wall).mint(
                    sub="alice", audience=AUDIENCE, jti=secrets.token_hex(8)))

    def validate(self, token: str) -> None:
        try:
            self.validator.validate(token)
        except UnknownKey:
            self.refused += 1
        else:
            self.accepted += 1

    def flood(self) -> None:
        """A hostile client spends the service's unknown-kid refetch."""
        stranger = SigningKey.generate("ES256", kid=secrets.token_hex(6))
        fetches = self.balancer.fetches
        with pytest.raises(UnknownKey):
            self.validator.validate(TokenIssuer(ISSUER, stranger, clock=self.wall).mint(sub="x", audience=AUDIENCE))
        assert self.balancer.fetches == fetches + 1


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "keys")
    try:
        yield w
    finally:
        w.balancer.stop()


def run(world: World, rotations: set[int], floods: frozenset[int] = frozenset(), seconds: int = 40) -> None:
    for second in range(seconds):
        if second in floods:
            world.flood()
        if second in rotations:
            world.tool.rotate()
        world.load()
        world.tick()


def test_two_rotations_3_s_apart_refuse_nothing_and_need_no_refetch(world: World) -> None:
    run(world, rotations={11, 14})
    assert world.refused == 0 and world.accepted == 160
    assert len(world.kids) == 3
    assert world.balancer.fetches == 1  # both promoted keys were in the start-up fetch


def test_back_to_back_rotations_survive_a_flood_that_spent_the_refetch(world: World) -> None:
    run(world, rotations={11, 12}, floods=frozenset({10}))
    assert world.refused == 0
    assert len(world.kids) == 3


@pytest.mark.parametrize("count", [3, 5])
def test_up_to_five_rotations_a_second_apart_cost_one_refetch(world: World, count: int) -> None:
    run(world, rotations=set(range(11, 11 + count)))
    assert world.refused == 0
    assert len(world.kids) == count + 1
    assert world.balancer.fetches == 2  # start-up, and one refetch at the third rotation


def test_every_replica_publishes_the_same_jwks_after_each_rotation(world: World) -> None:
    for _ in range(3):
        world.tool.rotate()
        documents: list[Any] = [r.jwks() for r in world.replicas]
        assert documents[0] == documents[1]
        assert world.replicas[0].current().kid == world.replicas[1].current().kid == world.tool.current().kid
