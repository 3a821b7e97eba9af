"""``token-middleware demo`` itself: it starts the edge and the three services, says which edge
listens on the first port, prints curl lines that work exactly as printed (through that edge), and
stops everything on SIGTERM and on Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import re
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from demo_gateway.supervisor import DemoPorts, nginx_binary, port_is_free

pytestmark = pytest.mark.e2e

#: The checkout; the demo is started from a directory below it (it looks upward for it).
REPO_ROOT = Path(__file__).resolve().parents[2]


def demo_env() -> dict[str, str]:
    """The caller's environment without the demo's names and without ``PYTHONPATH``: the demo
    must find the (not installed) demo packages in the checkout by itself."""
    return {
        k: v for k, v in os.environ.items()
        if not k.startswith("TOKEN_MIDDLEWARE_") and k != "PYTHONPATH"
    }


def ignore_stop_signals() -> None:
    """In the child before exec: SIGINT and SIGTERM ignored, as a background job or nohup
    inherits them, so the test proves the demo installs its own handlers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

#: (what the printed comment promises, status in the curl output, text in the curl output)
EXPECTED = [
    ("200", "HTTP/1.1 200", '"sub":"alice"'),
    ("403 insufficient_scope", "HTTP/1.1 403", "insufficient_scope"),
    ("the chain", "HTTP/1.1 200", '"customers":'),
    ("201", "HTTP/1.1 201", '"customer_id":"bob"'),
    ("customer records", "HTTP/1.1 200", '"customer":'),
    ("401", "HTTP/1.1 401", "Basic realm="),
]


def demo_command() -> list[str]:
    script = Path(sys.executable).with_name("token-middleware")
    if script.exists():
        return [str(script), "demo"]
    return [sys.executable, "-m", "token_middleware.cli", "demo"]


def read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """What the demo printed up to ``marker``; a reader thread keeps the wait bounded."""
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    out = ""
    deadline = time.monotonic() + timeout
    while marker not in out:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {marker!r} from the demo within {timeout}s; it printed:\n{out}")
        try:
            out += lines.get(timeout=min(remaining, 1.0))
        except queue.Empty:
            if process.poll() is not None and lines.empty():
                raise AssertionError(f"the demo exited ({process.returncode}); it printed:\n{out}") from None
    return out


#: What the banner says about the edge on the first port.
EDGE_LINES = {
    "nginx": ["nginx (deploy/nginx/nginx.conf.template): clients connect here", "behind nginx"],
    "python": ["the Python gateway (demo_gateway.wsgi:app) forwards by itself"],
}


@pytest.mark.parametrize(
    ("edge", "stop_signal"),
    [pytest.param("auto", signal.SIGTERM, id="default-edge-sigterm"),
     pytest.param("python", signal.SIGINT, id="python-edge-ctrl-c")],
)
def test_demo_command_prints_curl_lines_that_work_as_printed(
    tmp_path: Path, edge: str, stop_signal: signal.Signals
) -> None:
    ports = DemoPorts.free()
    process = subprocess.Popen(
        [*demo_command(), "--ports", f"{ports.gateway},{ports.orders},{ports.customers}",
         "--keys-dir", str(tmp_path / "keys"), "--log-dir", str(tmp_path / "logs"), "--edge", edge],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=demo_env(),
        cwd=str(Path(__file__).resolve().parent),
        preexec_fn=ignore_stop_signals,
        start_new_session=True,  # its own process group: a failed test can stop every child
    )
    try:
        banner = read_until(process, "Press Ctrl-C", timeout=90)
        lines = [line for line in banner.splitlines() if line.startswith("curl ")]
        comments = [line for line in banner.splitlines() if line.startswith("# ")]
        assert len(lines) == len(EXPECTED), banner
        assert f"http://127.0.0.1:{ports.gateway}/login" in banner
        expected_edge = "nginx" if edge == "auto" and nginx_binary() is not None else "python"
        assert f"edge       http://127.0.0.1:{ports.gateway}" in banner, banner
        for text in EDGE_LINES[expected_edge]:
            assert text in banner, banner
        if expected_edge == "python" and edge == "auto":
            assert "nginx is not installed" in banner
        assert all(f"127.0.0.1:{ports.gateway}/" in line for line in lines), "a curl line bypasses the edge"
        backend = re.search(r"gateway    http://127\.0\.0\.1:(\d+)", banner)
        all_ports = [*ports, *([int(backend.group(1))] if backend else [])]

        for line, comment, (promise, status, needle) in zip(lines, comments, EXPECTED):
            assert promise in comment
            result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
            output = re.sub(r'":\s+', '":', result.stdout)  # compact JSON whatever the service's style
            assert result.returncode == 0, (line, result.stderr)
            assert output.startswith(status), (line, result.stdout[:400])
            assert needle in output, (line, result.stdout[:600])

        process.send_signal(stop_signal)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the demo and the gunicorns it started
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert all(port_is_free("127.0.0.1", port) for port in all_ports), "a service outlived the demo"


def test_demo_command_refuses_busy_ports(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = DemoPorts.free()
        result = subprocess.run(
            [*demo_command(), "--ports", f"{port},{ports.orders},{ports.customers}",
             "--log-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, env=demo_env(), cwd=str(REPO_ROOT),
        )

    assert result.returncode == 1
    assert f"port(s) {port}" in result.stdout and "--ports" in result.stdout
