"""Fixtures for the Redis store tests: a real ``redis-server`` started by the tests (see
``_redis_support.py``). Every test here is skipped when ``redis-server`` or redis-py is not
installed. The server keeps nothing on disk (``--save ""``), so each start is empty.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="redis-py is not installed (the 'redis' extra)")

if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent))

from _redis_support import REDIS_SERVER, RedisServer  # noqa: E402

if REDIS_SERVER is None:
    pytest.skip("redis-server is not installed (apt-get install redis-server)", allow_module_level=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


T = TypeVar("T")


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """``closing(store)`` returns ``store`` and closes it at the end of the test."""
    opened: list[Any] = []

    def register(store: T) -> T:
        opened.append(store)
        return store

    yield register
    for store in opened:
        store.close()
