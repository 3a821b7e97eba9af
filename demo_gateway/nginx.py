"""nginx for the demo: ``deploy/nginx/nginx.conf.template`` filled in, run unprivileged in the
foreground, waited for and always stoppable.

What is trusted: the template and the arguments. nginx's pid, logs, temp files and its
``auth_request`` cache (which holds minted tokens and, in its keys, client credentials) live under
a private prefix directory (``0700``).

Example::

    process = start_nginx(host="127.0.0.1", port=8000, gateway="127.0.0.1:8100",
                          orders="127.0.0.1:8001", customers="127.0.0.1:8002", prefix=log_dir)
    ...
    process.stop()
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .processes import (
    SOURCE_ROOT,
    DemoError,
    ManagedProcess,
    port_is_free,
    start_process,
    url_host,
    wait_until_answers,
)

NGINX_TEMPLATE = SOURCE_ROOT / "deploy" / "nginx" / "nginx.conf.template"
NGINX_BINARY = "/usr/sbin/nginx"


def nginx_binary() -> str | None:
    """Debian's nginx, or the one on ``PATH``; ``None`` when there is none."""
    if os.access(NGINX_BINARY, os.X_OK):
        return NGINX_BINARY
    return shutil.which("nginx")


def nginx_globals() -> str:
    """The ``-g`` directives for the demo's nginx: in the foreground, and, when started by root,
    with its workers kept as root: as ``nobody`` (nginx's default) they could not reach the
    private (``0700``) prefix that holds the ``auth_request`` cache and the temp files."""
    return "daemon off; user root;" if hasattr(os, "geteuid") and os.geteuid() == 0 else "daemon off;"


def render_nginx_conf(
    *,
    prefix: Path,
    listen: str,
    gateway: str,
    orders: str,
    customers: str,
    template: Path = NGINX_TEMPLATE,
) -> str:
    """Fill ``deploy/nginx/nginx.conf.template``.

    ``listen`` is nginx's ``listen`` argument (``127.0.0.1:8000``); ``gateway``, ``orders`` and
    ``customers`` are ``host:port`` of the upstreams; ``prefix`` holds pid, logs and temp files.
    """
    text = template.read_text()
    values = {
        "PREFIX": str(prefix),
        "LISTEN": listen,
        "GATEWAY": gateway,
        "ORDERS": orders,
        "CUSTOMERS": customers,
    }
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    if "@@" in text:
        raise DemoError(f"{template} has a placeholder that render_nginx_conf does not fill")
    return text


def run_nginx(
    *,
    host: str,
    port: int,
    gateway: str,
    orders: str,
    customers: str,
    prefix: Path | None = None,
    ready_timeout: float = 15.0,
) -> ManagedProcess:
    """Run nginx on ``host:port`` in front of the given upstreams (``host:port`` each) and wait
    until it answers (its ``/.well-known/jwks.json``, served by the gateway behind it)."""
    binary = nginx_binary()
    if binary is None:
        raise DemoError("nginx is not installed (Debian: apt-get install nginx-light)")
    if not port_is_free(host, port):
        raise DemoError(f"port {port} on {host} is in use; choose another for nginx")
    prefix = prefix or Path(tempfile.mkdtemp(prefix="token-middleware-nginx-"))
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o700)
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx_conf(prefix=prefix, listen=f"{url_host(host)}:{port}", gateway=gateway,
                          orders=orders, customers=customers)
    )
    flags = ["-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
    check = subprocess.run([binary, "-t", *flags], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise DemoError(f"nginx rejected {conf}:\n{check.stderr.strip()}")
    process = start_process("nginx", [binary, *flags, "-g", nginx_globals()],
                            env=dict(os.environ), log_dir=prefix, cwd=prefix)
    try:
        wait_until_answers(
            f"http://{url_host(host)}:{port}/.well-known/jwks.json", timeout=ready_timeout, process=process
        )
    except BaseException:
        process.stop()
        raise
    return process
