"""Fixtures of the reliability suite: many users, a stack per gunicorn worker model, figures.

The load figures (requests, concurrency, crossovers, 5xx) are printed by each test (visible with
``-s`` or ``-rA``) and repeated in the terminal summary. ``TOKEN_MIDDLEWARE_SOAK=1`` scales the
counts up; ``python -m tests.reliability.soak`` is the long job.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_stack import (
    FIGURES,
    WORKER_MODELS,
    LoadResult,
    Stack,
    WorkerModel,
    start_stack,
    user_passwords,
    warm_up,
    write_users_file,
)

USER_COUNT = 50

def pytest_configure(config: pytest.Config) -> None:
    config.stash[FIGURES] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> object:
    """``report(result)``: print a load result and keep it for the terminal summary."""

    def record(result: LoadResult | str) -> None:
        line = result if isinstance(result, str) else result.line()
        print(line)
        request.config.stash[FIGURES].append(line)

    return record


@pytest.fixture(scope="session")
def passwords() -> dict[str, str]:
    """``USER_COUNT`` distinct users and their passwords."""
    return user_passwords(USER_COUNT)


@pytest.fixture(scope="session")
def users_file(tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]) -> Path:
    return write_users_file(tmp_path_factory.mktemp("users") / "users.json", passwords)


@pytest.fixture(scope="module", params=WORKER_MODELS, ids=[m.name for m in WORKER_MODELS])
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    users_file: Path,
    passwords: dict[str, str],
) -> Iterator[Stack]:
    """Gateway, orders, customers and the stream app under gunicorn with one worker model."""
    model: WorkerModel = request.param
    running = start_stack(
        model=model,
        users_file=users_file,
        keys_dir=tmp_path_factory.mktemp(f"keys-{model.name}"),
        log_dir=tmp_path_factory.mktemp(f"logs-{model.name}"),
    )
    try:
        first = sorted(passwords)[0]
        warm_up(running, first, passwords[first])
        yield running
    finally:
        dead = running.dead()
        running.stop()
    assert not dead, f"services died during the {model.name} run: {dead}; logs in {running.log_dir}"
