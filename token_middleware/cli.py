"""The ``token-middleware`` command: keys, test tokens, token diagnosis, and the demo.

Subcommands::

    token-middleware keygen [--alg ES256|RS256] [--kid KID] [--out-dir DIR]
    token-middleware mint --key private.pem --iss URL --sub NAME --aud AUD [--aud AUD2]
                          [--scope "a b"] [--client-id ID] [--ttl SECONDS] [--claim k=v]
    token-middleware inspect [TOKEN|-] [--issuer URL --audience AUD
                             [--jwks-url URL | --public-keys FILE]]
    token-middleware rotate-keys --keys-dir DIR
    token-middleware demo [--host 127.0.0.1] [--ports 8000,8001,8002] [--edge auto|nginx|python]
                          [--token-mode exchange|forward]

What is trusted: ``mint`` signs whatever it is told to (it is a test tool; keep real signing keys
away from it). ``inspect`` without ``--issuer``/``--audience`` only *decodes* a token and says so:
nothing it prints is verified. With them, every check is made by the library's own
:class:`~token_middleware.core.validator.TokenValidator`, with keys only from ``--jwks-url``,
``--public-keys`` or the issuer's discovery document, never from the token's headers. When no
keys can be had, the signature line says why (connection refused, a discovery document naming
another issuer, …). Tokens are read from an argument or standard input and never printed back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from .core import b64url

__all__ = ["main"]


class CommandError(Exception):
    """A user error: printed as ``token-middleware: <message>``, exit status 2."""


# --- keygen -------------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace, out: TextIO) -> int:
    from .core.issuer import SigningKey, jwks_document

    key = SigningKey.generate(args.alg) if args.kid is None else _with_kid(args.alg, args.kid)
    pem = _text(key.private_pem())
    jwks = json.dumps(jwks_document([key]), indent=2)
    if args.out_dir is None:
        out.write(pem if pem.endswith("\n") else pem + "\n")
        out.write(jwks + "\n")
        return 0
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path = out_dir / "private.pem"
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    (out_dir / "jwks.json").write_text(jwks + "\n")
    out.write(
        f"kid {key.kid} ({key.alg})\n"
        f"private key: {private_path} (mode 600; keep it secret)\n"
        f"public JWKS: {out_dir / 'jwks.json'} (give this to services: TOKEN_MIDDLEWARE_PUBLIC_KEYS)\n"
    )
    return 0


def _with_kid(alg: str, kid: str) -> Any:
    from .core.issuer import SigningKey

    fresh = SigningKey.generate(alg)
    return SigningKey.from_pem(fresh.private_pem(), alg, kid=kid)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- mint ---------------------------------------------------------------------------------------


def _detect_alg(pem: bytes) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CommandError(f"--key is not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    raise CommandError("--key must be an EC P-256 or RSA private key")


def _parse_claim(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CommandError(f"--claim takes NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)  # numbers, true/false, null, lists, objects
    except json.JSONDecodeError:
        return name, value


def cmd_mint(args: argparse.Namespace, out: TextIO) -> int:
    from .core.issuer import SigningKey, TokenIssuer

    try:
        pem = Path(args.key).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read --key {args.key}: {exc.strerror}") from None
    alg = args.alg or _detect_alg(pem)
    key = SigningKey.from_pem(pem, alg, kid=args.kid)
    issuer = TokenIssuer(args.iss, key, ttl=args.ttl)
    scopes = [s for value in args.scope for s in value.split()]
    claims = issuer.claims(
        sub=args.sub, audience=list(args.aud), scopes=scopes, client_id=args.client_id
    )
    for name, value in (_parse_claim(c) for c in args.claim):
        if value is None:
            claims.pop(name, None)  # --claim sub=null: a token without sub, to test refusals
        else:
            claims[name] = value
    raw = key.sign(claims, {"typ": args.typ})
    out.write(raw + "\n")
    return 0


# --- inspect ------------------------------------------------------------------------------------


def _b64json(segment: str, what: str) -> Any:
    try:
        return json.loads(b64url.decode(segment))
    except ValueError as exc:
        raise CommandError(f"the token's {what} is not base64url-encoded JSON ({exc})") from None


def decode_unverified(raw: str) -> tuple[Any, Any]:
    """Header and claims of a compact JWS, without checking anything."""
    parts = raw.split(".")
    if len(parts) != 3:
        raise CommandError(f"not a compact JWT: expected 3 dot-separated parts, got {len(parts)}")
    return _b64json(parts[0], "header"), _b64json(parts[1], "claims")


def _describe_times(claims: Any) -> list[str]:
    lines = []
    if isinstance(claims, dict):
        now = time.time()
        for name in ("iat", "nbf", "exp"):
            value = claims.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
                delta = int(value - now)
                rel = f"in {delta}s" if delta >= 0 else f"{-delta}s ago"
                lines.append(f"  {name}: {when} ({rel})")
    return lines


def _describe_actors(claims: Any) -> str:
    """The ``act`` chain (RFC 8693 §4.1) in one line, nearest actor first; ``""`` without one."""
    from .core.token import parse_actors

    if not isinstance(claims, dict) or "act" not in claims:
        return ""
    actors = parse_actors(claims["act"])
    if actors is None:
        return "actor chain: the act claim is malformed (the validator refuses the token)"
    sub = claims.get("sub")
    for_whom = f", acting for {sub!r}" if isinstance(sub, str) else ""
    return f"actor chain (act, nearest first): {' <- '.join(actors)}{for_whom}"


def _read_token(arg: str | None) -> str:
    if arg is None or arg == "-":
        if sys.stdin.isatty():
            raise CommandError("give the token as an argument or on standard input")
        arg = sys.stdin.read()
    raw = arg.strip()
    if raw.lower().startswith("bearer "):
        raw = raw[7:].strip()
    if not raw:
        raise CommandError("the token is empty")
    return raw


def _check_fields(check: Any) -> tuple[str, bool | None, str]:
    """(name, verdict, detail) of one ``Check`` from ``TokenValidator.explain``."""
    if isinstance(check, dict):
        get = check.get
    else:
        def get(name: str, default: Any = None) -> Any:
            return getattr(check, name, default)
    name = get("name") or get("check") or "check"
    verdict = get("passed")
    if verdict is None:
        verdict = get("ok")
    detail = get("detail") or get("message") or get("description") or ""
    return str(name), None if verdict is None else bool(verdict), str(detail)


def _quietly(explain: Callable[[str], Any], raw: str) -> Any:
    """``explain(raw)`` without the key logger's server-side WARNING ("requests with a token get
    503: …") as a stray line on stderr when logging is not configured: inspect puts the cause
    on the signature line instead. Configured handlers still receive it."""
    import logging

    keys_log = logging.getLogger("token_middleware.keys")
    if keys_log.hasHandlers():
        return explain(raw)
    quiet = logging.NullHandler()
    keys_log.addHandler(quiet)
    try:
        return explain(raw)
    finally:
        keys_log.removeHandler(quiet)


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    raw = _read_token(args.token)
    header, claims = decode_unverified(raw)
    out.write("header (decoded, not verified):\n")
    out.write(json.dumps(header, indent=2, sort_keys=True) + "\n")
    out.write("claims (decoded, not verified):\n")
    out.write(json.dumps(claims, indent=2, sort_keys=True) + "\n")
    times = _describe_times(claims)
    if times:
        out.write("times:\n" + "\n".join(times) + "\n")
    chain = _describe_actors(claims)
    if chain:
        out.write(chain + "\n")

    if not args.issuer or not args.audience:
        out.write(
            "\nThe signature was NOT checked, and nothing above is verified. To check the token, "
            "give --issuer and --audience (keys come from --jwks-url, --public-keys, or the "
            "issuer's discovery document).\n"
        )
        return 0

    from .core.errors import TokenMiddlewareError
    from .core.settings import Settings
    from .core.validator import TokenValidator

    mapping: dict[str, Any] = {"ISSUER": list(args.issuer), "AUDIENCE": args.audience}
    for name, value in (
        ("JWKS_URL", args.jwks_url),
        ("PUBLIC_KEYS", args.public_keys),
        ("ALGORITHMS", args.algorithms),
        ("ACCEPTED_TYPES", args.accepted_types),
        ("LEEWAY", args.leeway),
    ):
        if value is not None:
            mapping[name] = value
    try:
        validator = TokenValidator(Settings.from_mapping(mapping))
    except TokenMiddlewareError as exc:
        raise CommandError(f"invalid options: {exc}") from None

    explain = getattr(validator, "explain", None)
    out.write(f"\nchecks (issuer {', '.join(args.issuer)}, audience {args.audience}):\n")
    if explain is None:
        # Older cores have no explain(); fall back to one verdict.
        out.write("  (this version of the validator cannot list its checks one by one)\n")
        try:
            validator.validate(raw)
        except TokenMiddlewareError as exc:
            out.write(f"  REFUSED  [{exc.reason}] {exc}\n\nverdict: the token is REFUSED.\n")
            return 1
        out.write("\nverdict: the token is ACCEPTED.\n")
        return 0

    failed = 0
    reasons: list[str] = []  # the reason codes of the failed checks, as metrics and logs name them
    for check in _quietly(explain, raw):
        name, verdict, detail = _check_fields(check)
        mark = {True: "ok     ", False: "FAILED ", None: "skipped"}[verdict]
        failed += verdict is False
        reason = getattr(check, "reason", None) if verdict is False else None
        if isinstance(reason, str) and reason and reason not in reasons:
            reasons.append(reason)
        out.write(f"  {mark}  {name}" + (f": {detail}" if detail else "") + "\n")
    if failed:
        codes = f"; reason: {', '.join(reasons)}" if reasons else ""
        out.write(f"\nverdict: the token is REFUSED ({failed} check(s) failed{codes}).\n")
        return 1
    out.write("\nverdict: the token is ACCEPTED: every check passed.\n")
    return 0


# --- rotate-keys --------------------------------------------------------------------------------


def cmd_rotate_keys(args: argparse.Namespace, out: TextIO) -> int:
    from .gateway.issuing.keystore import KeyStore

    keys_dir = Path(args.keys_dir)
    if not keys_dir.is_dir():
        raise CommandError(f"{keys_dir} does not exist; give the gateway's GATEWAY_KEYS_DIR")
    # The same algorithm and token lifetime as the gateway's, so the store does not switch
    # algorithms or drop the previous key too early.
    store = KeyStore(keys_dir, alg=args.alg, token_ttl=args.token_ttl)
    result = store.rotate()
    kid = getattr(result, "kid", None)
    out.write(
        f"rotated the signing key in {args.keys_dir}"
        + (f": new kid {kid}" if kid else "")
        + ".\nThe previous public key stays in the JWKS until the tokens it signed have expired.\n"
    )
    return 0


# --- demo ---------------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised from the SIGINT and SIGTERM handlers to leave the demo's wait loop."""


#: The signals that stop the demo cleanly.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def demo_curl_lines(gateway_url: str) -> list[tuple[str, str]]:
    """``(what it shows, curl line)`` pairs printed by ``demo``; each works as printed."""
    body = '{"item": "green tea", "quantity": 3}'
    return [
        ("alice reads her identity through the gateway: 200",
         f"curl -sS -i -u alice:alice-password {gateway_url}/orders/whoami"),
        ("alice may not write: 403 insufficient_scope",
         f"curl -sS -i -u alice:alice-password -X POST -H 'Content-Type: application/json' "
         f"-d '{body}' {gateway_url}/orders"),
        ("the chain: the same sub arrives at orders and at customers",
         f"curl -sS -i -u alice:alice-password {gateway_url}/orders/chain"),
        ("bob may write: 201 Created",
         f"curl -sS -i -u bob:bob-password -X POST -H 'Content-Type: application/json' "
         f"-d '{body}' {gateway_url}/orders"),
        ("orders with their customer records (orders:read)",
         f"curl -sS -i -u bob:bob-password {gateway_url}/orders"),
        ("no gateway credential: 401 with a Basic challenge",
         f"curl -sS -i {gateway_url}/orders/whoami"),
    ]


#: Files that mark a clone of the repository: the demo runs from one, never from the wheel.
_CHECKOUT_MARKERS = ("demo_gateway/supervisor.py", "deploy/nginx/nginx.conf.template")

_NOT_IN_CHECKOUT = (
    "the demo runs from a clone of the repository: run ./run demo there "
    "(demo_gateway is not installed with the package)"
)


def find_checkout(start: Path | None = None) -> Path | None:
    """The nearest directory, from ``start`` (default: the current directory) upward, that holds
    both ``demo_gateway/supervisor.py`` and ``deploy/nginx/nginx.conf.template``; else ``None``."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if all((directory / marker).is_file() for marker in _CHECKOUT_MARKERS):
            return directory
    return None


def _demo_import_path() -> None:
    """Put the checkout around the current directory first on ``sys.path``, so the demo
    packages import from it even though they are not installed.

    Raises :class:`CommandError` when there is no checkout and ``demo_gateway`` is not importable.
    """
    checkout = find_checkout()
    if checkout is not None:
        if str(checkout) not in sys.path:
            sys.path.insert(0, str(checkout))
        return
    import importlib.util

    try:
        found = importlib.util.find_spec("demo_gateway.supervisor") is not None
    except ImportError:  # no demo_gateway package at all
        found = False
    if not found:
        raise CommandError(_NOT_IN_CHECKOUT)


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    _demo_import_path()
    from demo_gateway.supervisor import DemoConfig, DemoError, DemoPorts, DemoStack

    try:
        ports = DemoPorts.parse(args.ports)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    config = DemoConfig(
        host=args.host,
        ports=ports,
        keys_dir=Path(args.keys_dir) if args.keys_dir else None,
        log_dir=Path(args.log_dir) if args.log_dir else None,
        edge=args.edge,
        token_mode=args.token_mode,
    )

    def on_stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop()

    # Own handlers for both: a SIGINT ignored by whoever started us (a background job, nohup)
    # is inherited as SIG_IGN, and Python then never raises KeyboardInterrupt.
    previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    stack: DemoStack | None = None
    try:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, on_stop)
        out.write("starting the gateway, the edge (nginx when installed), orders (Flask) and "
                  "customers (Django)...\n")
        out.flush()
        try:
            stack = DemoStack.start(config)
        except DemoError as exc:
            out.write(f"token-middleware demo: {exc}\n")
            return 1
        _print_demo_banner(out, stack)
        out.flush()
        while True:
            dead = stack.dead()
            if dead:
                p = dead[0]
                out.write(
                    f"\n{p.name} exited (status {p.popen.returncode}); stopping the demo. "
                    f"Its log ends with:\n{p.log_tail()}\n"
                )
                return 1
            time.sleep(0.5)
    except (KeyboardInterrupt, _Stop):
        out.write("\nstopping...\n")
        return 0
    finally:
        # Ignore further Ctrl-C and SIGTERM while shutting down (bounded: SIGTERM, wait,
        # SIGKILL), so the children are always reaped.
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            if stack is not None:
                stack.stop()
        finally:
            for sig, handler in previous.items():
                # None: a handler not installed from Python; it cannot be put back from here.
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        out.flush()


def _print_demo_banner(out: TextIO, stack: Any) -> None:
    gw = stack.gateway_url
    edge = "".join(f"{line}\n" for line in stack.describe())
    out.write(
        "\nThe demo is running:\n"
        f"{edge}"
        f"  orders     {stack.orders_url}   (demo_flask.wsgi:app, audience orders-service)\n"
        f"  customers  {stack.customers_url}   (demo_django.wsgi:application, audience customers-service)\n"
        f"  logs       {stack.log_dir}\n"
        "\nDemo users: alice / alice-password (orders:read customers:read)\n"
        "            bob   / bob-password   (orders:read orders:write customers:read)\n"
        "\nTry (copy and paste):\n\n"
    )
    for what, line in demo_curl_lines(gw):
        out.write(f"# {what}\n{line}\n\n")
    out.write(f"In a browser: {gw}/login  (then the page at {gw}/app)\n")
    out.write(f"Keys: {gw}/.well-known/jwks.json   discovery: {gw}/.well-known/openid-configuration\n")
    out.write("\nPress Ctrl-C to stop everything.\n")


# --- argument parsing ---------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="token-middleware",
        description="Access-token tools: keys, test tokens, token diagnosis, and the demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="generate a signing key and its public JWKS")
    p.add_argument("--alg", choices=("ES256", "RS256"), default="ES256")
    p.add_argument("--kid", help="key id (default: the RFC 7638 thumbprint)")
    p.add_argument("--out-dir", help="write private.pem and jwks.json here (default: stdout)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("mint", help="sign a token with the given claims (for testing)")
    p.add_argument("--key", required=True, help="PEM private key file (from keygen)")
    p.add_argument("--alg", choices=("ES256", "RS256"), help="default: from the key type")
    p.add_argument("--kid", help="key id in the header (default: the key's thumbprint)")
    p.add_argument("--iss", required=True, help="issuer (iss)")
    p.add_argument("--sub", required=True, help="subject (sub)")
    p.add_argument("--aud", action="append", required=True, help="audience; repeat for several")
    p.add_argument("--scope", action="append", default=[], help='scopes, e.g. "orders:read"')
    p.add_argument("--client-id", default="token-middleware-cli")
    p.add_argument("--ttl", type=int, default=300, help="lifetime in seconds (default 300)")
    p.add_argument("--typ", default="at+jwt", help="the typ header (default at+jwt, RFC 9068)")
    p.add_argument("--claim", action="append", default=[], metavar="NAME=VALUE",
                   help="extra claim; VALUE is JSON when it parses as JSON; null removes a claim")
    p.set_defaults(func=cmd_mint)

    p = sub.add_parser("inspect", help="decode a token and explain why it is accepted or refused")
    p.add_argument("token", nargs="?", help="the token (default: read from standard input)")
    p.add_argument("--issuer", action="append", help="trusted issuer; repeat for several")
    p.add_argument("--audience", help="the audience of the service that would receive it")
    p.add_argument("--jwks-url", help="where the public keys are (default: discovery)")
    p.add_argument("--public-keys", help="file with PEM, JWK or JWKS public keys")
    p.add_argument("--algorithms", help="allowed algorithms, comma-separated (default RS256,ES256)")
    p.add_argument("--accepted-types", help="accepted typ values, comma-separated")
    p.add_argument("--leeway", type=int, help="clock skew in seconds (default 30)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("rotate-keys", help="rotate the gateway's signing key")
    p.add_argument("--keys-dir", required=True, help="the gateway's GATEWAY_KEYS_DIR")
    p.add_argument("--alg", type=str.upper, choices=("ES256", "RS256"),
                   default=(os.environ.get("GATEWAY_ALG") or "ES256").upper(),
                   help="the gateway's GATEWAY_ALG (default: $GATEWAY_ALG or ES256)")
    p.add_argument("--token-ttl", type=int, default=_env_int("GATEWAY_TOKEN_TTL", 300),
                   help="the gateway's GATEWAY_TOKEN_TTL (default: $GATEWAY_TOKEN_TTL or 300)")
    p.set_defaults(func=cmd_rotate_keys)

    p = sub.add_parser("demo", help="run the edge, the gateway, orders and customers on loopback")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--ports", default="8000,8001,8002", help="gateway,orders,customers")
    p.add_argument("--keys-dir", help="gateway keys (default: the gateway's own default)")
    p.add_argument("--log-dir", help="where the services' logs go (default: a temp dir)")
    p.add_argument("--edge", choices=("auto", "nginx", "python"), default="auto",
                   help="what listens on the first port: nginx in front of the gateway, or the "
                        "Python gateway forwarding by itself (default auto: nginx when installed)")
    p.add_argument("--token-mode", choices=("exchange", "forward"), default="exchange",
                   help="exchange: each hop gets its own token at the gateway's /oauth2/token "
                        "(RFC 8693, default); forward: one token names both services")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``token-middleware``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args, sys.stdout)
    except CommandError as exc:
        print(f"token-middleware: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
