"""``token-middleware keygen | mint | inspect``: real keys, real tokens, the CLI's own output.

``inspect`` against keys that cannot be had uses the core suite's loopback ``JWKSServer`` and a
port that refuses connections (bound, never listening, held for the test).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from token_middleware.cli import find_checkout, main

CORE_TESTS = Path(__file__).resolve().parents[1] / "core"
if str(CORE_TESTS) not in sys.path:
    sys.path.insert(0, str(CORE_TESTS))
from _support import JWKSServer  # noqa: E402 - the core suite's loopback JWKS server

ISSUER = "https://issuer.test"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(params=["ES256", "RS256"])
def keys(request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    status, out, _ = run(capsys, "keygen", "--alg", request.param, "--out-dir", str(tmp_path))
    assert status == 0 and "kid" in out
    return tmp_path


def mint(capsys: pytest.CaptureFixture[str], keys: Path, *extra: str) -> str:
    status, out, err = run(
        capsys, "mint", "--key", str(keys / "private.pem"), "--iss", ISSUER, "--sub", "alice",
        "--aud", "orders-service", "--aud", "customers-service", "--scope", "orders:read", *extra,
    )
    assert status == 0, err
    return out.strip()


def mint_for(capsys: pytest.CaptureFixture[str], keys: Path, issuer: str) -> str:
    status, out, err = run(capsys, "mint", "--key", str(keys / "private.pem"), "--iss", issuer, "--sub", "alice",
                           "--aud", "orders-service")
    assert status == 0, err
    return out.strip()


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_keygen_to_stdout_prints_a_private_pem_and_a_public_jwks(
    capsys: pytest.CaptureFixture[str], alg: str
) -> None:
    status, out, _ = run(capsys, "keygen", "--alg", alg)

    pem, _, jwks_text = out.partition("-----END PRIVATE KEY-----\n")
    jwks = json.loads(jwks_text)
    assert status == 0
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert [k["alg"] for k in jwks["keys"]] == [alg]
    assert all(private not in jwks["keys"][0] for private in ("d", "p", "q"))


def test_keygen_out_dir_writes_a_private_key_only_its_owner_can_read(keys: Path) -> None:
    mode = stat.S_IMODE((keys / "private.pem").stat().st_mode)

    assert mode == 0o600
    assert json.loads((keys / "jwks.json").read_text())["keys"][0]["kid"]


def test_inspect_accepts_a_good_token_and_lists_every_check(
    capsys: pytest.CaptureFixture[str], keys: Path
) -> None:
    token = mint(capsys, keys)

    status, out, _ = run(
        capsys, "inspect", token, "--issuer", ISSUER, "--audience", "customers-service",
        "--public-keys", str(keys / "jwks.json"),
    )

    assert status == 0, out
    assert "ACCEPTED" in out
    assert "FAILED" not in out
    for check in ("signature", "algorithm", "type"):
        assert check in out
    assert token not in out


@pytest.mark.parametrize(
    ("mint_args", "inspect_args", "words"),
    [
        pytest.param([], ["--audience", "billing-service"], "audience", id="wrong-audience"),
        pytest.param(["--ttl", "1", "--claim", "exp=1000000000"], [], "expired", id="expired"),
        pytest.param([], ["--issuer", "https://other.test"], "issuer", id="wrong-issuer"),
        pytest.param(["--claim", "sub=null"], [], "sub", id="missing-sub"),
    ],
)
def test_inspect_explains_a_refused_token_in_plain_words(
    capsys: pytest.CaptureFixture[str], keys: Path, mint_args: list[str], inspect_args: list[str], words: str
) -> None:
    token = mint(capsys, keys, *mint_args)
    options = {"--issuer": ISSUER, "--audience": "orders-service"}
    options.update(dict(zip(inspect_args[::2], inspect_args[1::2])))

    status, out, _ = run(
        capsys, "inspect", token, *[x for kv in options.items() for x in kv],
        "--public-keys", str(keys / "jwks.json"),
    )

    assert status == 1
    assert "REFUSED" in out
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert failed and any(words in line.lower() for line in failed), out
    assert token not in out


def test_inspect_refuses_a_token_signed_by_another_key(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    run(capsys, "keygen", "--out-dir", str(other))
    token = mint(capsys, other)

    status, out, _ = run(
        capsys, "inspect", token, "--issuer", ISSUER, "--audience", "orders-service",
        "--public-keys", str(keys / "jwks.json"),
    )

    assert status == 1
    assert any("signature" in line or "key id" in line for line in out.splitlines() if "FAILED" in line), out


def test_inspect_without_keys_only_decodes_and_says_so(
    capsys: pytest.CaptureFixture[str], keys: Path
) -> None:
    token = mint(capsys, keys, "--claim", 'tenant="acme"')

    status, out, _ = run(capsys, "inspect", token)

    assert status == 0
    assert '"tenant": "acme"' in out
    assert '"typ": "at+jwt"' in out
    assert "signature was NOT checked" in out
    assert token not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["inspect", "not-a-token"], "3 dot-separated parts", id="not-a-jwt"),
        pytest.param(["inspect", "a.b.c"], "not base64url-encoded JSON", id="garbage-segments"),
        pytest.param(["mint", "--key", "/nonexistent.pem", "--iss", ISSUER, "--sub", "a", "--aud", "x"],
                     "cannot read --key", id="missing-key-file"),
        pytest.param(["mint", "--key", "/dev/null", "--iss", ISSUER, "--sub", "a", "--aud", "x",
                      "--claim", "x=1"], "PEM private key", id="not-a-key"),
    ],
)
def test_user_errors_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, _, err = run(capsys, *argv)

    assert status == 2
    assert message in err


def test_rotate_keys_refuses_a_missing_keys_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, "rotate-keys", "--keys-dir", str(tmp_path / "missing"))

    assert status == 2
    assert "does not exist" in err
    assert not (tmp_path / "missing").exists()


# --- demo outside a checkout --------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


def _outside_env() -> dict[str, str]:
    """No ``PYTHONPATH``: only the installed ``token_middleware`` is importable, not the repo's
    ``demo_*`` packages."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _entry_points() -> list[list[str]]:
    commands = [[sys.executable, "-m", "token_middleware.cli"]]
    script = Path(sys.executable).with_name("token-middleware")
    if script.exists():
        commands.append([str(script)])
    return commands


@pytest.mark.parametrize("command", _entry_points(), ids=lambda c: Path(c[-1]).name)
def test_demo_outside_a_checkout_says_to_use_run_demo(tmp_path: Path, command: list[str]) -> None:
    assert find_checkout(tmp_path) is None  # the temp dir is not inside a clone
    env = _outside_env()
    probe = subprocess.run(
        [sys.executable, "-c", "import token_middleware, importlib.util as u; "
         "print(u.find_spec('demo_gateway') is None)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert probe.stdout.strip() == "True", probe.stderr  # the package imports, the demo does not

    result = subprocess.run(
        [*command, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "./run demo" in lines[0] and "clone of the repository" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_find_checkout_looks_upward_for_both_markers(tmp_path: Path) -> None:
    (tmp_path / "demo_gateway").mkdir()
    (tmp_path / "demo_gateway" / "supervisor.py").write_text("")
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)

    assert find_checkout(below) is None  # no deploy/nginx/nginx.conf.template yet
    (tmp_path / "deploy" / "nginx").mkdir(parents=True)
    (tmp_path / "deploy" / "nginx" / "nginx.conf.template").write_text("")
    assert find_checkout(below) == tmp_path.resolve()
    assert find_checkout(REPO_ROOT / "tests") == REPO_ROOT


def test_demo_help_works_from_the_checkout() -> None:
    result = subprocess.run(
        [*_entry_points()[-1], "demo", "--help"],
        cwd=REPO_ROOT, env=_outside_env(), capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "--edge" in result.stdout


# --- inspect when no keys can be had: the cause is on the signature line --------------------------


@pytest.fixture
def jwks_server(keys: Path) -> Iterator[JWKSServer]:
    """A real JWKS and discovery server on loopback, serving the keys from ``keygen``."""
    from token_middleware.core.issuer import SigningKey

    with JWKSServer([SigningKey.from_pem((keys / "private.pem").read_bytes(), _alg_of(keys))]) as server:
        yield server


def _alg_of(keys: Path) -> str:
    return str(json.loads((keys / "jwks.json").read_text())["keys"][0]["alg"])


def signature_line(out: str) -> str:
    [line] = [line.strip() for line in out.splitlines() if line.strip().split()[1:2] == ["signature:"]]
    return line


def test_inspect_names_a_discovery_issuer_mismatch_on_the_signature_line(
    capsys: pytest.CaptureFixture[str], keys: Path, jwks_server: JWKSServer
) -> None:
    issuer = jwks_server.url + "/"  # the trailing slash the discovery document does not have
    token = mint_for(capsys, keys, issuer)

    status, out, _ = run(capsys, "inspect", token, "--issuer", issuer, "--audience", "orders-service")

    assert status == 1
    assert signature_line(out) == (
        "FAILED   signature: the token signing keys are unavailable (discovery document at "
        f"{jwks_server.url}/.well-known/openid-configuration names issuer {jwks_server.url!r} but ISSUER is "
        f"{issuer!r} (they differ only by a trailing slash): set ISSUER to exactly the issuer the document names)"
    )
    assert "retry shortly" not in out
    assert token not in out


def test_inspect_names_a_refused_connection_on_the_signature_line(
    capsys: pytest.CaptureFixture[str], keys: Path
) -> None:
    token = mint(capsys, keys)
    with socket.socket() as refusing:  # bound, never listening: connections to it are refused
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        url = f"http://127.0.0.1:{port}/jwks.json"

        status, out, _ = run(capsys, "inspect", token, "--issuer", ISSUER, "--audience", "orders-service",
                             "--jwks-url", url)

    assert status == 1
    assert signature_line(out) == (
        f"FAILED   signature: the token signing keys are unavailable (connection refused by 127.0.0.1:{port} "
        f"fetching {url})"
    )


def test_inspect_with_a_working_jwks_url_keeps_the_usual_signature_lines(
    capsys: pytest.CaptureFixture[str], keys: Path, jwks_server: JWKSServer, tmp_path: Path
) -> None:
    status, out, _ = run(capsys, "inspect", mint(capsys, keys), "--issuer", ISSUER,
                         "--audience", "orders-service", "--jwks-url", jwks_server.jwks_url)
    assert status == 0, out
    assert signature_line(out).startswith("ok       signature: verified")

    run(capsys, "keygen", "--alg", _alg_of(keys), "--kid", json.loads((keys / "jwks.json").read_text())["keys"][0]["kid"],
        "--out-dir", str(tmp_path / "other"))
    status, out, _ = run(capsys, "inspect", mint(capsys, tmp_path / "other"), "--issuer", ISSUER,
                         "--audience", "orders-service", "--jwks-url", jwks_server.jwks_url)
    assert status == 1
    line = signature_line(out)
    assert line.startswith("FAILED   signature:") and "unavailable" not in line, line


def test_inspect_as_a_command_prints_the_cause_once(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = mint(capsys, keys)
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{refusing.getsockname()[1]}/jwks.json"

        result = subprocess.run(
            [*_entry_points()[0], "inspect", "-", "--issuer", ISSUER, "--audience", "orders-service", "--jwks-url", url],
            input=token, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )

    assert result.returncode == 1, result.stderr
    assert "unavailable (connection refused by 127.0.0.1:" in signature_line(result.stdout)
    assert result.stderr == ""  # not again as a stray server-side WARNING line
