"""Gateway replicas behind a load balancer (issue 16, item 1), end to end.

Three gateway replicas (three separate gunicorn masters, standing in for three hosts, two
workers each) share one ``GATEWAY_KEYS_DIR`` and one users file behind Debian's nginx
(round-robin ``upstream``, every path to the next replica). Their issuer is nginx's URL, and the
orders (Flask) and customers (Django) services trust that issuer and discover their keys through
nginx, with the library's default settings (``JWKS_MIN_REFRESH_SECONDS`` 30 s, not lowered).
Forwarding mode: the gateway mints ``/orders`` tokens for ``orders-service customers-service``,
and the orders service forwards the same token to the customers service.

The test checks that every replica publishes the same JWKS, that a session cookie from one
replica is accepted by the others, and that two ``token-middleware rotate-keys`` runs, 3 s apart,
from a separate process during a chained load (12 threads, several users) refuse nothing and
cross no identities, and are adopted: afterwards every replica signs with the key the second
rotation promoted, which the services had known since start-up (published two rotations ahead).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from _replicas_support import (
    Replicas,
    rotate_keys,
    run_chain_load,
    start_replicas,
    write_users_file,
)

from demo_gateway.supervisor import nginx_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.nginx]

REPLICAS = 3
WORKERS_PER_REPLICA = 2
USER_COUNT = 6
THREADS = 12
AT_LEAST = 1500
#: The rotations: the first this long into the load, the second this long after the first.
FIRST_ROTATION_AFTER = 3.0
ROTATION_GAP = 3.0
#: The load goes on at least this long after the second rotation (every replica notices a
#: rotation within a second).
LOAD_AFTER_LAST_ROTATION = 5.0
SESSION_COOKIE = "gw_session"  # http issuer: no __Host- prefix


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Replicas, Path, dict[str, str]]]:
    """The running topology, its keys directory and ``user -> password``; always stopped."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (/usr/sbin/nginx); `./run test` installs nginx-light")
    passwords = write_users_file(tmp_path / "users.json", USER_COUNT)
    keys_dir = tmp_path / "keys"
    topology = start_replicas(count=REPLICAS, workers=WORKERS_PER_REPLICA, keys_dir=keys_dir,
                              users_file=tmp_path / "users.json", log_dir=tmp_path / "logs")
    try:
        yield topology, keys_dir, passwords
    finally:
        topology.stop()


def jwks_of(url: str) -> dict[str, Any]:
    response = requests.get(f"{url}/.well-known/jwks.json", timeout=10)
    assert response.status_code == 200, response.text[:300]
    document: dict[str, Any] = response.json()
    return document


def published_everywhere(topology: Replicas, rounds: int = 4) -> dict[str, Any]:
    """The JWKS, asserted identical at every replica (``rounds`` fetches each, so that both
    workers of a replica answer) and through the balancer."""
    documents = [jwks_of(url) for url in topology.gateway_urls for _ in range(rounds)]
    documents.append(jwks_of(topology.balancer_url))
    assert all(doc == documents[0] for doc in documents), [
        [k["kid"] for k in doc["keys"]] for doc in documents
    ]
    return documents[0]


def minted_kid(gateway_url: str, user: str, password: str, decode_header: Any) -> str:
    """The ``kid`` of a token the replica at ``gateway_url`` mints (its ``/_auth``) for the chain."""
    response = requests.get(
        f"{gateway_url}/_auth",
        auth=(user, password),
        headers={"X-Original-URI": "/orders/chain", "X-Original-Method": "GET"},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:300]
    kid: str = decode_header(response.headers["X-Access-Token"])["kid"]
    return kid


def session_cookie_from(gateway_url: str, user: str, password: str, login: Any) -> str:
    with requests.Session() as session:
        session.trust_env = False
        response = login(session, gateway_url, user, password)
        assert response.status_code in (302, 303), response.text[:300]
        value = session.cookies.get(SESSION_COOKIE)
    assert value, "the login set no session cookie"
    return str(value)


def whoami_with_cookie(gateway_url: str, cookie: str) -> requests.Response:
    return requests.get(f"{gateway_url}/orders/whoami", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
                        timeout=10)


def warm_up(topology: Replicas, user: str, password: str, *, ok_in_a_row: int = 24,
            timeout: float = 30.0) -> None:
    """Until the chain answers 200 ``ok_in_a_row`` times in a row through the balancer: every
    service worker has done its start-up key fetch (before it, a worker answers 503)."""
    deadline = time.monotonic() + timeout
    ok = 0
    with requests.Session() as session:
        session.trust_env = False
        while ok < ok_in_a_row:
            status = session.get(f"{topology.balancer_url}/orders/chain", auth=(user, password),
                                 timeout=10).status_code
            ok = ok + 1 if status == 200 else 0
            assert status in (200, 503), f"warm-up: {status}"
            assert time.monotonic() < deadline, "the services never all answered"
            if status != 200:
                time.sleep(0.2)


def test_three_replicas_share_keys_and_cookies_and_rotate_twice_under_load(
    replicas: tuple[Replicas, Path, dict[str, str]], login: Any, decode_header: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topology, keys_dir, passwords = replicas
    users = sorted(passwords)
    first, second = users[0], users[1]

    # Every replica publishes the same JWKS: the current key and two keys ahead.
    before = published_everywhere(topology)
    kids_before = [k["kid"] for k in before["keys"]]
    assert len(kids_before) == 3, kids_before

    # A session cookie from the first replica is accepted by the others.
    cookie = session_cookie_from(topology.gateway_urls[0], first, passwords[first], login)
    for url in topology.gateway_urls[1:]:
        response = whoami_with_cookie(url, cookie)
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
        assert response.json()["sub"] == first

    kid_before = minted_kid(topology.gateway_urls[0], second, passwords[second], decode_header)
    assert kid_before == kids_before[0]
    warm_up(topology, second, passwords[second])

    rotated: list[tuple[float, str]] = []
    rotation_errors: list[BaseException] = []

    def rotate_twice() -> None:
        try:
            time.sleep(FIRST_ROTATION_AFTER)
            rotated.append((time.monotonic(), rotate_keys(keys_dir)))
            time.sleep(ROTATION_GAP)
            rotated.append((time.monotonic(), rotate_keys(keys_dir)))
        except BaseException as exc:  # reported by the main thread
            rotation_errors.append(exc)

    def load_may_stop() -> bool:
        if rotation_errors:
            return True
        return len(rotated) == 2 and time.monotonic() >= rotated[1][0] + LOAD_AFTER_LAST_ROTATION

    rotator = threading.Thread(target=rotate_twice, name="rotate-keys", daemon=True)
    rotator.start()
    tally = run_chain_load(f"{topology.balancer_url}/orders/chain", passwords, threads=THREADS,
                           at_least=AT_LEAST, until=load_may_stop)
    rotator.join(timeout=30)

    figure = (f"replicas: {tally.requests} requests through nginx, {len(rotated)} rotations, "
              f"{tally.refused} refused, {tally.crossovers} crossovers, {tally.rate:.0f} req/s")
    with capsys.disabled():  # the figure shows in every run, not only with -s
        print(f"\n{figure}")
    assert not rotation_errors, rotation_errors
    assert len(rotated) == 2
    assert tally.requests >= AT_LEAST
    assert tally.refused == 0, (figure, dict(tally.statuses), tally.examples,
                                [round(t - rotated[0][0], 1) for t in tally.refused_at[:5]])
    assert tally.crossovers == 0, (figure, tally.examples)
    assert not topology.dead(), topology.dead()

    # The rotations were adopted everywhere: every replica (both of its workers) signs with the
    # key the second rotation promoted, which was published before the load began.
    new_kid = rotated[1][1]
    assert rotated[0][1] == kids_before[1] and new_kid == kids_before[2], (kids_before, rotated)
    for url in topology.gateway_urls:
        for _ in range(4):
            assert minted_kid(url, second, passwords[second], decode_header) == new_kid != kid_before
    after = published_everywhere(topology)
    kids_after = [k["kid"] for k in after["keys"]]
    assert kids_after[0] == new_kid
    assert set(kids_before) <= set(kids_after), "a key whose tokens may be alive left the JWKS"

    # The session secret did not rotate: the cookie still works everywhere.
    for url in topology.gateway_urls:
        assert whoami_with_cookie(url, cookie).status_code == 200
