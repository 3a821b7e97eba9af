"""(h) The project against the libraries a user would pick instead (issue 16, item 4).

One route, ``GET /orders/whoami`` answering ``{"sub": …, "scopes": […]}``, served by the apps of
:mod:`benchmarks.peer_apps`, every one under the same gunicorn setting (``sync``, 2 workers: the
setting of the issue's "today" figures) and loaded by wrk with the same script
(``-t2 -c16``):

* Flask: bare (no token work, the limit), the project (``TokenAuth``), flask-jwt-extended
  (``@jwt_required()``), PyJWT with ``PyJWKClient`` in a ``before_request`` hook, and Authlib's
  RFC 9068 resource protector;
* DRF: a bare ``APIView``, the project's ``BearerTokenAuthentication`` and simplejwt's
  ``JWTStatelessUserAuthentication``.

The tokens are real RS256 tokens (RFC 9068, two audiences, three scopes, an hour to live); the
apps check issuer, audience, expiry and signature. The project, PyJWT and Authlib fetch the key
set over HTTP from a JWKS server on loopback; flask-jwt-extended and simplejwt take the PEM public
key. Before anything is measured, every app (bare ones excepted) must answer the good token with
200 and the same JSON as the bare app, and refuse with 401 a token for another audience, one from
another issuer, and one signed with another key under the right ``kid``: no app is measured doing
less work than the others.

Three workloads, each with its own wrk Lua script (in a private temporary directory, mode 0600;
no token is ever printed):

* the same token on every request (static header);
* 2,000 distinct tokens (distinct ``sub`` and ``jti``) cycled: every token fits the project's
  verified cache (4,096 entries per worker), so after the warm-up every request is a hit;
* 20,000 distinct tokens cycled: more than any cache holds, so every request is a cold validation.

For the cycled workloads wrk reads the tokens from a 0600 file in ``init``, builds every request
once with ``wrk.format`` and ``request()`` returns them in turn; its two threads take alternate
tokens, so a token comes back only after all the others. Serving a request from Lua costs wrk
some CPU on a 2-core machine; the bare app gets the very same script, so the ratios stay fair.

Every workload runs all apps in alternating rounds (the order rotated each round); each ratio is
the median over rounds of the per-round ratio. "Best peer" is the peer with the highest median
throughput in that workload.
"""

from __future__ import annotations

import importlib.util
import os
import re
import statistics
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo_gateway import supervisor
from token_middleware.core.issuer import SigningKey, TokenIssuer, jwks_document

from ._common import AUDIENCE, ISSUER, SCOPES, SUBJECT, Options, Row, _version, load_average, ratio_text, temp_dir
from ._http import HOST, Skip, WrkResult, lua_script, parse_wrk, wrk_binary
from .jwks import counting_jwks_server

NAME = "peers"
FIGURE = "h"

#: One setting for every app: the issue's "today" figures were measured with it.
WORKERS = 2
WORKER_CLASS = "sync"
WRK_THREADS = 2
WRK_CONNECTIONS = 16

ROUTE = "/orders/whoami"
PIP = ".venv/bin/python -m pip install -e '.[bench]'"

#: (distribution, module) of every peer: the figure is skipped when one is missing.
PEER_PACKAGES = (
    ("flask-jwt-extended", "flask_jwt_extended"),
    ("PyJWT", "jwt"),
    ("Authlib", "authlib"),
    ("joserfc", "joserfc"),
    ("djangorestframework-simplejwt", "rest_framework_simplejwt"),
    ("djangorestframework", "rest_framework"),
    ("django", "django"),
    ("flask", "flask"),
)


@dataclass(frozen=True)
class App:
    name: str
    target: str
    env: Mapping[str, str]
    bare: bool = False


def flask_apps() -> list[App]:
    def app(name: str, module: str, bare: bool = False) -> App:
        return App(name, f"benchmarks.peer_apps.{module}:create_app()", {}, bare)

    return [
        app("bare Flask", "bare", bare=True),
        app("project", "project"),
        app("flask-jwt-extended", "flask_jwt_ext"),
        app("PyJWT + PyJWKClient", "pyjwt_app"),
        app("Authlib RFC 9068", "authlib_app"),
    ]


def drf_apps() -> list[App]:
    def app(name: str, which: str, bare: bool = False) -> App:
        return App(name, "benchmarks.peer_apps.drf_wsgi:application", {"PEER_DRF_APP": which}, bare)

    return [app("bare DRF", "bare", bare=True), app("project DRF", "project"), app("simplejwt", "simplejwt")]


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    tokens: int  # 1: the same token, static header
    target_best_peer: float | None
    target_bare: float | None
    warm_up: float


def workloads(options: Options) -> list[Workload]:
    many, cold = (100, 1_000) if options.quick else (2_000, 20_000)
    warm = 0.0 if options.quick else 1.0
    return [
        Workload("same", "same token", 1, 1.3, 0.95, warm),
        # the project needs every token seen by both workers before its cache is all hits
        Workload("many", f"{many:,} tokens", many, 1.3, 0.95, 0.0 if options.quick else 3.0),
        Workload("cold", f"{cold:,} tokens", cold, 1.2, 0.85, warm),
    ]


def missing_peers() -> list[str]:
    return [dist for dist, module in PEER_PACKAGES if importlib.util.find_spec(module) is None]


def versions() -> dict[str, str]:
    names = ("token-middleware", "flask", "flask-jwt-extended", "PyJWT", "Authlib", "joserfc", "django",
             "djangorestframework", "djangorestframework-simplejwt", "python-jose", "cryptography", "gunicorn")
    return {name: _version(name) for name in names}


# -- tokens ---------------------------------------------------------------------------------------


def _mint_range(pem: bytes, kid: str, start: int, stop: int) -> list[str]:
    issuer = TokenIssuer(ISSUER, SigningKey.from_pem(pem, "RS256", kid=kid), ttl=3600)
    return [issuer.mint(sub=f"user-{i:05d}", audience=[AUDIENCE, "customers-service"], scopes=SCOPES)
            for i in range(start, stop)]


def mint_many(key: SigningKey, count: int) -> list[str]:
    """``count`` tokens with distinct ``sub`` (and ``jti``), minted on every CPU (RSA signing is slow)."""
    pem = key.private_pem()
    jobs = max(1, min(os.cpu_count() or 1, 4))
    if count < 500 or jobs == 1:
        return _mint_range(pem, key.kid, 0, count)
    bounds = [count * j // jobs for j in range(jobs + 1)]
    with ProcessPoolExecutor(jobs) as pool:
        parts = pool.map(_mint_range, [pem] * jobs, [key.kid] * jobs, bounds[:-1], bounds[1:])
        return [token for part in parts for token in part]


@dataclass
class Tokens:
    key: SigningKey
    good: str
    wrong_audience: str
    wrong_issuer: str
    other_key: str

    @classmethod
    def create(cls) -> Tokens:
        key = SigningKey.generate("RS256")
        other = SigningKey.generate("RS256")
        issuer = TokenIssuer(ISSUER, key, ttl=3600)
        claims = issuer.claims(sub=SUBJECT, audience=[AUDIENCE, "customers-service"], scopes=SCOPES)
        return cls(
            key=key,
            good=issuer.mint(sub=SUBJECT, audience=[AUDIENCE, "customers-service"], scopes=SCOPES),
            wrong_audience=issuer.mint(sub=SUBJECT, audience=["billing-service"], scopes=SCOPES),
            wrong_issuer=TokenIssuer("http://127.0.0.1/another-issuer", key).mint(
                sub=SUBJECT, audience=[AUDIENCE], scopes=SCOPES),
            # the right kid, another key: only a signature check refuses it
            other_key=other.sign(claims, {"typ": "at+jwt", "kid": key.kid}),
        )

    def refused(self) -> dict[str, str]:
        return {"wrong audience": self.wrong_audience, "wrong issuer": self.wrong_issuer,
                "signed with another key": self.other_key}


# -- wrk --------------------------------------------------------------------------------------------


def _private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def cycling_script(directory: Path, tokens: Sequence[str], name: str, *, per_request_format: bool = False) -> Path:
    """A wrk script cycling through ``tokens`` (read from a 0600 file; neither is ever printed).

    Each wrk thread takes every ``WRK_THREADS``-th token. By default the requests are built once
    in ``init`` with ``wrk.format`` and ``request()`` returns them in turn; with
    ``per_request_format`` every request is formatted in ``request()`` (what most examples do).
    """
    for token in tokens:
        if not token.isascii() or not token.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError("tokens must be compact JWS strings")
    token_file = _private_file(directory / f"{name}.tokens", "".join(f"Bearer {t}\n" for t in tokens))
    body = f"""-- generated by benchmarks.peers; reads credentials from a private, temporary file
local path = "{token_file}"
local threads = 0
function setup(thread)
  thread:set("part", threads)
  threads = threads + 1
end
function init(args)
  local all = {{}}
  for line in io.lines(path) do all[#all + 1] = line end
  headers = {{}}
  values = {{}}
  requests = {{}}
  for k = 1 + part, #all, {WRK_THREADS} do
    values[#values + 1] = all[k]
    headers["Authorization"] = all[k]
    requests[#requests + 1] = wrk.format(nil, nil, headers)
  end
  n = #values
  i = 0
end
"""
    if per_request_format:
        body += """function request()
  i = i + 1
  if i > n then i = 1 end
  headers["Authorization"] = values[i]
  return wrk.format(nil, nil, headers)
end
"""
    else:
        body += """function request()
  i = i + 1
  if i > n then i = 1 end
  return requests[i]
end
"""
    return _private_file(directory / f"{name}.lua", body)


def run_wrk(url: str, seconds: float, script: Path) -> WrkResult:
    argv = [wrk_binary(), f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{max(1, round(seconds))}s",
            "--timeout=5s", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:500]}")
    return parse_wrk(done.stdout)


def rotate(names: Sequence[str], rounds: int, run: Callable[[str], WrkResult]) -> dict[str, list[WrkResult]]:
    """``rounds`` rounds of every candidate, the order rotated by one each round."""
    out: dict[str, list[WrkResult]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in [*names[k:], *names[:k]]:
            out[name].append(run(name))
    return out


def median_rps(results: Sequence[WrkResult]) -> float:
    return statistics.median(r.requests_per_second for r in results)


def median_ratio(results: Mapping[str, Sequence[WrkResult]], name: str, baseline: str) -> float:
    return statistics.median(a.requests_per_second / b.requests_per_second
                             for a, b in zip(results[name], results[baseline]))


# -- checks -----------------------------------------------------------------------------------------


def status_and_body(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def check_apps(urls: Mapping[str, str], apps: Sequence[App], tokens: Tokens) -> list[str]:
    """What is wrong with the apps (nothing: an empty list). Never includes a token."""
    import json

    problems: list[str] = []
    expected: Any = None
    for app in apps:
        status, body = status_and_body(urls[app.name] + ROUTE, tokens.good)
        answer = json.loads(body) if status == 200 else None
        if status != 200:
            problems.append(f"{app.name}: the good token got {status}")
        elif expected is None:
            expected = answer
        elif answer != expected:
            problems.append(f"{app.name}: answered {answer}, not {expected}")
        if app.bare:
            continue
        for what, token in tokens.refused().items():
            status, _ = status_and_body(urls[app.name] + ROUTE, token)
            if status != 401:
                problems.append(f"{app.name}: a token {what} got {status}, not 401")
    return problems


# -- the figure -------------------------------------------------------------------------------------


@contextmanager
def serving(apps: Sequence[App], env: Mapping[str, str], log_dir: Path) -> Iterator[dict[str, str]]:
    """Every app under gunicorn (started together, then waited for); yields name -> base URL."""
    processes = []
    urls: dict[str, str] = {}
    try:
        for app in apps:
            port = supervisor.free_port(HOST)
            argv = supervisor.gunicorn_argv(app.target, HOST, port, workers=WORKERS, worker_class=WORKER_CLASS,
                                             threads=1)
            argv = [a for a in argv if a not in ("--access-logfile", "-")]  # no access log: it costs time
            slug = re.sub(r"[^a-z0-9]+", "-", app.name.lower()).strip("-")
            processes.append(supervisor.start_process(f"peer-{slug}", argv, env=supervisor.base_env({**env, **app.env}),
                                                      log_dir=log_dir))
            urls[app.name] = f"http://{HOST}:{port}"
        for app, process in zip(apps, processes):
            supervisor.wait_until_answers(urls[app.name] + ROUTE, timeout=60, process=process)
        yield urls
    finally:
        for process in processes:  # all told first, then waited for
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in processes:
            process.stop()


@dataclass
class GroupResult:
    workload: Workload
    apps: list[App]
    results: dict[str, list[WrkResult]]
    load: str


def measure_group(apps: Sequence[App], urls: Mapping[str, str], scripts: Mapping[str, Path],
                  loads: Sequence[Workload], rounds: int, seconds: float) -> list[GroupResult]:
    out = []
    for workload in loads:
        script = scripts[workload.key]
        if workload.warm_up:
            for app in apps:
                run_wrk(urls[app.name] + ROUTE, workload.warm_up, script)
        results = rotate([a.name for a in apps], rounds, lambda name: run_wrk(urls[name] + ROUTE, seconds, script))
        out.append(GroupResult(workload, list(apps), results, load_average()))
    return out


def rows_for(group: GroupResult, flask: bool, rounds: int, seconds: float) -> list[Row]:
    w = group.workload
    results = group.results
    bare = next(a.name for a in group.apps if a.bare)
    project = next(a.name for a in group.apps if a.name.startswith("project"))
    peers = [a.name for a in group.apps if not a.bare and a.name != project]
    best = max(peers, key=lambda name: median_rps(results[name]))
    rps = {name: median_rps(rs) for name, rs in results.items()}
    failed = {name: sum(r.non_2xx + r.socket_errors for r in rs) for name, rs in results.items()}
    side = "bare Flask" if flask else "bare DRF"
    common = f"{rounds} rounds × {seconds:g} s; load average {group.load}"
    data_base = {"workload": w.key, "tokens": w.tokens, "rps": rps, "non_2xx_or_errors": failed,
                 "load_average": group.load}
    rows = []
    r_best = median_ratio(results, project, best)
    r_bare = median_ratio(results, project, bare)
    prefix = w.label if flask else f"DRF, {w.label}"
    versus = "best peer" if len(peers) > 1 else best
    rows.append(Row(FIGURE, f"{prefix}: {project} / {versus}", ratio_text(r_best),
                    target=f"≥ {w.target_best_peer:g}×" if flask and w.target_best_peer else "",
                    met=(r_best >= w.target_best_peer) if flask and w.target_best_peer else None,
                    note=f"best peer {best}; {rps[project]:.0f} vs {rps[best]:.0f} req/s; {common}",
                    data={**data_base, "ratio": r_best, "best_peer": best}))
    rows.append(Row(FIGURE, f"{prefix}: {project} / {side}", ratio_text(r_bare),
                    target=f"≥ {w.target_bare:g}×" if flask and w.target_bare else "",
                    met=(r_bare >= w.target_bare) if flask and w.target_bare else None,
                    note=f"{rps[project]:.0f} vs {rps[bare]:.0f} req/s",
                    data={"ratio": r_bare}))
    for peer in peers:
        ratio = median_ratio(results, peer, bare)
        rows.append(Row(FIGURE, f"  {prefix}: {peer} / {side}", ratio_text(ratio),
                        note=f"{rps[peer]:.0f} req/s", data={"ratio": ratio}))
    bad = sum(failed.values())
    requests = sum(r.requests for rs in results.values() for r in rs)
    rows.append(Row(FIGURE, f"  {prefix}: non-2xx (+ socket errors), all apps", str(bad), target="0",
                    met=bad == 0, note=f"of {requests} requests" + (
                        "; " + ", ".join(f"{k}: {v}" for k, v in failed.items() if v) if bad else ""),
                    data={"non_2xx_or_errors": failed}))
    return rows


def run(options: Options) -> list[Row]:
    wrk_binary()
    missing = missing_peers()
    if missing:
        raise Skip(f"peers not installed ({', '.join(missing)}): {PIP}")
    rounds = options.rounds_or(3, 1)
    seconds = options.duration_or(3.0, 1.0)
    loads = workloads(options)
    load_start = load_average()
    with temp_dir() as directory:
        tokens = Tokens.create()
        pem = directory / "public.pem"
        pem.write_bytes(tokens.key.public_pem())
        scripts = {"same": lua_script(directory, {"Authorization": f"Bearer {tokens.good}"})}
        for w in loads:
            if w.tokens > 1:
                scripts[w.key] = cycling_script(directory, mint_many(tokens.key, w.tokens), w.key)
        with counting_jwks_server(jwks_document([tokens.key])) as jwks:
            env = {"PEER_ISSUER": ISSUER, "PEER_AUDIENCE": AUDIENCE, "PEER_JWKS_URL": jwks.url,
                   "PEER_PUBLIC_KEY_FILE": str(pem)}
            flask, drf = flask_apps(), drf_apps()
            with serving([*flask, *drf], env, directory) as urls:
                problems = check_apps(urls, flask, tokens) + check_apps(urls, drf, tokens)
                if problems:
                    raise RuntimeError("the apps do not do the same work: " + "; ".join(problems))
                groups = [(True, measure_group(flask, urls, scripts, loads, rounds, seconds)),
                          (False, measure_group(drf, urls, scripts, loads, rounds, seconds))]
            fetches = jwks.count
    v = versions()
    setting = (f"gunicorn -w {WORKERS} -k {WORKER_CLASS} on {HOST}; wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS}; "
               f"{rounds} rounds × {seconds:g} s per app and workload, order rotated each round")
    rows = [Row(FIGURE, "peers: every app 200 to the token, 401 to another audience, issuer or key",
                "yes", note=f"{len(flask_apps()) + len(drf_apps()) - 2} apps checked (bare apps: 200 only); "
                            f"{fetches} JWKS fetches over HTTP in all",
                data={"jwks_fetches": fetches}),
            Row(FIGURE, "peers: setting and versions", "", note=f"{setting}; load average at start {load_start}; "
                + ", ".join(f"{k} {val}" for k, val in v.items()), data={"versions": v, "load_start": load_start})]
    for flask, results in groups:
        for group in results:
            rows += rows_for(group, flask, rounds, seconds)
    return rows
