"""Processes for the demo, the end-to-end tests and the benchmarks: start, wait for, always stop.

Every service runs as a real process of the *same* Python (``sys.executable -m gunicorn``) with
its output in a log file; :func:`wait_until_answers` polls until it answers HTTP, and
:meth:`ManagedProcess.stop` ends it (SIGTERM, bounded wait, SIGKILL).

What is trusted: only the arguments of these functions. :func:`base_env` builds a service's
environment without any ``TOKEN_MIDDLEWARE_*``, ``GATEWAY_*`` or ``CUSTOMERS_URL`` name of the
caller's shell, so stray variables cannot change what the demo trusts. gunicorn's access log
(:data:`ACCESS_LOG_FORMAT`) leaves out the Basic user name (``%(u)s``): it is client-supplied and
may hold a newline, which would forge a log line. Nothing here reads, logs or prints a token.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The root of the checkout (this file is ``demo_gateway/processes.py`` in it): it holds
#: ``token_middleware``, the ``demo_*`` packages (not installed: the services import them via
#: ``PYTHONPATH`` and their working directory, both this root) and ``deploy/``.
SOURCE_ROOT = Path(__file__).resolve().parents[1]

#: gunicorn's access log without ``%(u)s`` (the client-supplied Basic user name) and ``%(l)s``.
ACCESS_LOG_FORMAT = '%(h)s - - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

#: Prefixes of variables that are never inherited from the caller's environment.
_OWNED_PREFIXES = ("TOKEN_MIDDLEWARE_", "GATEWAY_", "CUSTOMERS_URL")


class DemoError(RuntimeError):
    """A service could not be started or did not become ready; the message says which and why."""


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on ``host:port`` now (as gunicorn and nginx bind it).

    ``SO_REUSEADDR`` as they use it: connections of a stopped server lingering in TIME_WAIT do
    not make the port busy, a listening socket does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that the OS says is free (there is a small race until someone binds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def url_host(host: str) -> str:
    """``host`` as it appears in a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass
class ManagedProcess:
    """One child process with its log file; :meth:`stop` is idempotent."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)


def start_process(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], log_dir: Path, cwd: Path | None = None
) -> ManagedProcess:
    """Start ``argv`` with its stdout and stderr going to ``log_dir/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=str(cwd or SOURCE_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


def gunicorn_argv(
    wsgi_target: str,
    host: str,
    port: int,
    *,
    workers: int = 2,
    worker_class: str = "sync",
    threads: int = 1,
    timeout: int = 30,
    keepalive: int | None = None,
) -> list[str]:
    """``python -m gunicorn`` with the same interpreter as the caller.

    ``keepalive`` is gunicorn's ``--keep-alive``: for its ``gevent`` worker also the time a
    request head may take to arrive (the whole head, from the first byte or from the previous
    request), after which the connection is dropped.
    """
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{url_host(host)}:{port}",
        "--workers", str(workers),
        "--worker-class", worker_class,
        "--timeout", str(timeout),
        "--graceful-timeout", "5",
        "--access-logfile", "-",
        "--access-logformat", ACCESS_LOG_FORMAT,
        "--chdir", str(SOURCE_ROOT),
    ]
    if threads > 1:
        argv += ["--threads", str(threads)]
    if keepalive is not None:
        argv += ["--keep-alive", str(keepalive)]
    return [*argv, wsgi_target]


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any demo-owned names, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWNED_PREFIXES)}
    python_path = [str(SOURCE_ROOT)]
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def wait_until_answers(
    url: str, *, timeout: float = 30.0, process: ManagedProcess | None = None
) -> int:
    """Poll ``url`` until it answers any HTTP status; return that status.

    Raises :class:`DemoError` after ``timeout`` seconds, or at once if ``process`` exits.
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if process is not None and not process.running():
            raise DemoError(
                f"{process.name} exited with status {process.popen.returncode} before answering "
                f"{url}; its log ({process.log_path}) ends with:\n{process.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.1)
    name = process.name if process else url
    tail = f"; log ends with:\n{process.log_tail()}" if process else ""
    raise DemoError(f"{name} did not answer {url} within {timeout:g}s ({last_error}){tail}")
