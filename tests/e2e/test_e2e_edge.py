"""The findings of the attack on the demo's edge (issue 12), each replayed through the real edge,
nginx and the Python gateway alike: slow and idle clients, slow bodies, login lockouts, request
bodies on GET/HEAD, ambiguous Transfer-Encoding, the auth cache, forged access-log lines, the
JSON of refusals, nested JSON, and ECDSA's second spelling of a token.

Waits are for events (a socket closed, a log line written), each bounded; none assumes a speed.
"""

from __future__ import annotations

import base64
import json
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from _e2e_support import GATEWAY_WORKERS, Front, basic, request_from

from demo_gateway.supervisor import DemoStack
from token_middleware.core import b64url

pytestmark = pytest.mark.e2e

ALICE = ("alice", "alice-password")
BOB = ("bob", "bob-password")
#: Attempts that make every gateway worker see more than the limit (5) for one name at least once.
OVER_THE_LIMIT = 5 * GATEWAY_WORKERS + 1


def hostport(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def raw_exchange(url: str, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` as is and read until the server closes (or ``timeout`` passes)."""
    with socket.create_connection(hostport(url), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return received


def read_answer(sock: socket.socket, timeout: float) -> bytes:
    """One whole answer (head and Content-Length body) from ``sock``, or what came before EOF."""
    sock.settimeout(timeout)
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(body) >= length:
                return data
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.1)


# -- slow, idle and many clients --------------------------------------------------------------------


def test_slow_idle_and_many_clients_do_not_stall_the_edge(front: Front, http: requests.Session) -> None:
    """Findings: 3,300 partial heads stalled the gateway; one socket was still open after 75 s;
    600 idle sockets refused new clients at nginx. Now every such socket is dropped after a few
    seconds, and meanwhile an authenticated request is answered at once."""
    host, port = hostport(front.url)
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(600)]
    partial = [socket.create_connection((host, port), timeout=10) for _ in range(50)]
    trickling = [socket.create_connection((host, port), timeout=10) for _ in range(5)]
    sockets = idle + partial + trickling
    try:
        for sock in partial:
            sock.sendall(b"GET /orders/whoami HTTP/1.1\r\nHost: x\r\n")
        response = http.get(f"{front.url}/orders/whoami", auth=ALICE, timeout=10)
        assert response.status_code == 200, response.text[:300]

        open_ones = set(sockets)
        selector = selectors.DefaultSelector()
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        head = b"GET /orders/whoami HTTP/1.1\r\nX-Slow: " + b"a" * 1000
        deadline = time.monotonic() + 30
        step = 0
        while open_ones and time.monotonic() < deadline:
            for sock in trickling:  # one byte every 0.2 s: a head that never ends
                if sock in open_ones:
                    try:
                        sock.send(head[step % len(head): step % len(head) + 1])
                    except OSError:
                        pass
            step += 1
            for key, _ in selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 400"):
                    selector.unregister(sock)
                    open_ones.discard(sock)
        selector.close()
        assert not open_ones, f"{len(open_ones)} of {len(sockets)} slow or idle sockets still open after 30 s"
    finally:
        for sock in sockets:
            sock.close()


def test_a_slow_body_holds_no_service_worker(front: Front, http: requests.Session) -> None:
    """Finding: two connections trickling a 200 kB POST body pinned the orders service's two
    sync workers, and other users got 504. Now the edge reads a body whole before it calls a
    service: three such trickles (one more than the service has workers) leave it free."""
    host, port = hostport(front.url)
    head = (f"POST /orders HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {basic(*BOB)}\r\n"
            "Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n").encode()
    trickles = [socket.create_connection((host, port), timeout=10) for _ in range(3)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.2):
            for sock in trickles:
                try:
                    sock.send(b" ")
                except OSError:
                    pass

    sender = threading.Thread(target=trickle, daemon=True)
    try:
        for sock in trickles:
            sock.sendall(head + b"{")
        sender.start()
        for _ in range(3):
            assert http.get(f"{front.url}/orders/whoami", auth=ALICE, timeout=10).status_code == 200
            created = http.post(f"{front.url}/orders", json={"item": "tea", "quantity": 1}, auth=BOB, timeout=10)
            assert created.status_code == 201, created.text[:300]
        if front.name == "python":  # the gateway's body deadline (the demo's 30 s; here 3 s)
            stop.set()
            sender.join(5)
            for sock in trickles:
                answer = read_answer(sock, timeout=20)
                assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
                assert b"did not arrive in time" in answer
    finally:
        stop.set()
        for sock in trickles:
            sock.close()


# -- failed logins --------------------------------------------------------------------------------


def test_a_burst_of_wrong_passwords_for_one_name_never_locks_out_another(
    front: Front, http: requests.Session, login: Callable[..., requests.Response]
) -> None:
    """Finding: twenty wrong passwords for mallory locked bob out for about 5 minutes (403
    through nginx, 429 at the login page): the limit was per client address, and behind nginx
    every client had nginx's address."""
    statuses = [
        http.get(f"{front.url}/orders/whoami", auth=("mallory", f"guess-{i}"), timeout=10).status_code
        for i in range(20)
    ]
    assert 429 in statuses and set(statuses) <= {401, 429}

    assert http.get(f"{front.url}/orders/whoami", auth=BOB, timeout=10).status_code == 200
    with requests.Session() as browser:
        assert login(browser, front.url, "bob").status_code == 303
        assert browser.get(f"{front.url}/orders/whoami", timeout=10).status_code == 200


def test_failed_logins_are_limited_per_name_and_real_client_address(front: Front) -> None:
    """Through nginx the gateway believes nginx's X-Forwarded-For (and only nginx's): a client's
    own X-Forwarded-For never gives it a fresh count, another address is another count, and
    another name from the same address is not limited."""
    name = f"carol-{front.name}"
    statuses = [
        request_from("127.0.0.2", front.url, "/orders/whoami",
                     {"Authorization": basic(name, f"guess-{i}"), "X-Forwarded-For": f"198.51.100.{i}"})[0]
        for i in range(OVER_THE_LIMIT)
    ]
    assert 429 in statuses, f"a spoofed X-Forwarded-For escaped the limit: {statuses}"

    status, headers, body = request_from("127.0.0.2", front.url, "/orders/whoami", {"Authorization": basic(name, "x")})
    if status == 429:
        assert json.loads(body)["error"] == "too_many_requests"
        assert 0 < int(headers["Retry-After"]) <= 300
    other_address = request_from("127.0.0.3", front.url, "/orders/whoami", {"Authorization": basic(name, "x")})
    assert other_address[0] == 401
    other_name = request_from("127.0.0.2", front.url, "/orders/whoami", {"Authorization": basic(*BOB)})
    assert other_name[0] == 200


# -- request framing ------------------------------------------------------------------------------

SMUGGLED = b"GET /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer stolen\r\n\r\n"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_body_on_get_or_head_is_refused(front: Front, method: str) -> None:
    """Finding: a GET body carried a smuggled request that a keep-alive service answered on the
    pooled connection, and the answers of two users got swapped. Bodies on GET/HEAD are now
    refused at the edge, in both modes, with the same answer."""
    host, port = hostport(front.url)
    request = (f"{method} /orders/whoami HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {basic(*ALICE)}\r\n"
               f"Connection: close\r\nContent-Length: {len(SMUGGLED)}\r\n\r\n").encode() + SMUGGLED
    answer = raw_exchange(front.url, request)
    assert status_of(answer) == 400, answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1
    if method == "GET":
        body = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert body == {"error": "invalid_request", "error_description": "GET requests must not have a body"}


@pytest.mark.parametrize(
    "codings",
    [
        pytest.param(["chunked", "chunked"], id="chunked-twice"),
        pytest.param(["chunked, chunked"], id="chunked-listed-twice"),
        pytest.param(["chunked, identity"], id="chunked-identity"),
        pytest.param(["chunked", "identity"], id="two-headers"),
    ],
)
def test_a_duplicated_or_ambiguous_transfer_encoding_is_refused(front: Front, codings: list[str]) -> None:
    """Finding (gevent's pywsgi): a repeated Transfer-Encoding made the server drop the body's
    framing and parse the body as the next request."""
    host, port = hostport(front.url)
    lines = "".join(f"Transfer-Encoding: {c}\r\n" for c in codings)
    request = (f"POST /orders HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {basic(*BOB)}\r\n{lines}"
               "Connection: close\r\n\r\n").encode() + b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"
    answer = raw_exchange(front.url, request)
    assert status_of(answer) in ((400,) if front.name == "python" else (400, 501)), answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1, "the body was answered as a request of its own"


def test_the_auth_cache_never_serves_a_uri_the_gateway_refuses(front: Front, http: requests.Session) -> None:
    """Finding: nginx served ``GET //orders/whoami`` with alice's cached token although the
    gateway refuses that URI. Both modes now refuse it, with the same answer."""
    assert http.get(f"{front.url}/orders/whoami", auth=ALICE, timeout=10).status_code == 200  # cached
    host, port = hostport(front.url)
    answer = raw_exchange(front.url, (f"GET //orders/whoami HTTP/1.1\r\nHost: {host}:{port}\r\n"
                                      f"Authorization: {basic(*ALICE)}\r\nConnection: close\r\n\r\n").encode())
    assert status_of(answer) == 404, answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {
        "error": "not_found", "error_description": "no route for this path"}


# -- answers and logs -----------------------------------------------------------------------------


def refusals(url: str) -> dict[str, tuple[int, object, str | None]]:
    """Status, JSON body and challenge of the edge's refusals."""
    def answer(response: requests.Response) -> tuple[int, object, str | None]:
        return response.status_code, response.json(), response.headers.get("WWW-Authenticate")

    with requests.Session() as s:
        s.trust_env = False
        return {
            "no-credentials": answer(s.get(f"{url}/orders/whoami", timeout=10)),
            "wrong-password": answer(s.get(f"{url}/orders/whoami", auth=("alice", "nope"), timeout=10)),
            "bearer-only": answer(s.get(f"{url}/orders/whoami", headers={"Authorization": "Bearer a.b.c"}, timeout=10)),
            "malformed-basic": answer(s.get(f"{url}/orders/whoami", headers={"Authorization": "Basic !!"}, timeout=10)),
            "insufficient-scope": answer(s.post(f"{url}/orders", json={"item": "x", "quantity": 1}, auth=ALICE, timeout=10)),
            "no-route": answer(s.get(f"{url}/nothing-here", auth=ALICE, timeout=10)),
        }


def test_refusals_are_the_same_json_through_nginx_and_the_python_gateway(
    python_stack: DemoStack, nginx_stack: DemoStack
) -> None:
    """Finding: in nginx mode 401s were nginx's HTML page, not the gateway's JSON."""
    through_python = refusals(python_stack.gateway_url)
    through_nginx = refusals(nginx_stack.gateway_url)
    for case, (status, body, challenge) in through_python.items():
        assert through_nginx[case] == (status, body, challenge), case
    assert through_python["no-credentials"][0] == through_python["wrong-password"][0] == 401
    assert through_python["malformed-basic"][0] == 400


def log_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def test_a_newline_in_a_basic_user_name_forges_no_access_log_line(front: Front) -> None:
    """Finding: the Basic user name went raw into gunicorn's access log, so a "\\n" in it wrote
    a line of the attacker's choosing. No access log writes the client's user name now."""
    forged = f"FORGED {uuid.uuid4().hex} - - [01/Jan/2026] \"GET /admin HTTP/1.1\" 200"
    credential = "Basic " + base64.b64encode(f"mallory\n{forged}:pw".encode()).decode()
    stack = front.stack
    logs = {stack.gateway_url: stack.log_dir / ("nginx/access.log" if stack.edge == "nginx" else "gateway.log")}
    if stack.edge == "nginx":
        logs[stack.backend_url] = stack.log_dir / "gateway.log"  # the gateway's own gunicorn log
    for url, log in logs.items():
        probe = uuid.uuid4().hex
        status, _, _ = request_from("127.0.0.1", url, f"/orders/whoami?probe={probe}",
                                    {"Authorization": credential})
        assert status == 400  # control characters in a user name: malformed credentials
        wait_until(lambda: any(probe in line for line in log_lines(log)), 15, f"no access log line in {log}")
        lines = log_lines(log)
        assert not any(line.startswith("FORGED") for line in lines), f"a forged line in {log}"
        assert not any("mallory" in line for line in lines), f"the client's user name in {log}"


def test_deeply_nested_json_is_400_not_500(front: Front, http: requests.Session) -> None:
    """Finding: the orders service answered 500 (RecursionError) to a deeply nested body."""
    response = http.post(f"{front.url}/orders", data=b"[" * 100_000, auth=BOB, timeout=10,
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"] == "invalid_request"


def test_ecdsa_gives_a_token_a_second_spelling_with_the_same_jti(
    front: Front, http: requests.Session, mint_at_gateway: Callable[..., str]
) -> None:
    """SECURITY.md's claim was "one token has exactly one accepted spelling". ECDSA allows two
    (s and n - s); issuers produce both, so both are accepted. The jti is the same: what a
    denylist must key on."""
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's order
    token = mint_at_gateway(front.stack, "alice")
    head, payload, signature = token.split(".")
    raw = b64url.decode(signature)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    twin = f"{head}.{payload}.{b64url.encode(r + (n - s).to_bytes(32, 'big'))}"
    assert twin != token
    for spelling in (token, twin):
        response = http.get(f"{front.stack.orders_url}/orders/whoami",
                            headers={"Authorization": f"Bearer {spelling}"}, timeout=10)
        assert response.status_code == 200, response.headers.get("WWW-Authenticate")
    assert json.loads(b64url.decode(twin.split(".")[1]))["jti"] == json.loads(b64url.decode(payload))["jti"]
