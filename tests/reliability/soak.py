"""The long isolation job: the CI load test, much bigger, as a command.

    python -m tests.reliability.soak                      # 50,000 chained requests per worker model
    python -m tests.reliability.soak --requests 200000 --concurrency 128 --models gevent

For each gunicorn worker model (sync, gthread, gevent) it starts the gateway, orders, customers
and the stream app on free loopback ports with ``--users`` distinct users, warms up, then sends
``--requests`` chained calls (gateway -> orders -> customers), and a quarter as many streamed,
fan-out and direct half-anonymous requests, at ``--concurrency``. It prints one figure line per
load (requests, concurrency, crossovers, 5xx, other failures, rate) and exits 1 if any
crossover, 5xx or failure was seen. Every process is stopped at the end, whatever happens.

``TOKEN_MIDDLEWARE_SOAK=1 pytest tests/reliability`` runs the pytest suite with the same larger
counts (and 20,000 hostile inputs per property) instead.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_stack import (  # noqa: E402 - after the path set-up above
    WORKER_MODELS,
    Call,
    LoadResult,
    chain_shows_caller,
    fanout_shows_caller,
    gateway_token,
    run_load,
    start_stack,
    stream_shows_caller,
    user_passwords,
    warm_up,
    write_users_file,
)


def soak(requests_per_model: int, concurrency: int, models: list[str], user_count: int) -> list[LoadResult]:
    results: list[LoadResult] = []
    tmp = Path(tempfile.mkdtemp(prefix="token-middleware-soak-"))
    passwords = user_passwords(user_count)
    users = sorted(passwords)
    users_file = write_users_file(tmp / "users.json", passwords)
    rng = random.Random(7)
    for model in (m for m in WORKER_MODELS if m.name in models):
        stack = start_stack(model=model, users_file=users_file, keys_dir=tmp / f"keys-{model.name}",
                            log_dir=tmp / f"logs-{model.name}")
        try:
            warm_up(stack, users[0], passwords[users[0]])

            def via_gateway(path: str, count: int) -> list[Call]:
                calls = [Call(u, f"{stack.gateway_url}{path}", auth=(u, passwords[u]))
                         for u in (users[i % len(users)] for i in range(count))]
                rng.shuffle(calls)
                return calls

            side = max(1, requests_per_model // 4)
            loads = [
                ("chain", via_gateway("/orders/chain", requests_per_model), chain_shows_caller),
                ("stream", via_gateway("/stream/chunks?n=6", side), stream_shows_caller),
                ("fanout", via_gateway("/stream/fanout?n=6", side), fanout_shows_caller),
            ]
            tokens = {u: gateway_token(stack.gateway_url, u, passwords[u], "/stream/chunks") for u in users}
            direct = [
                Call("anonymous", f"{stack.stream_url}/stream/chunks?n=6") if i % 2 else
                Call(users[i % len(users)], f"{stack.stream_url}/stream/chunks?n=6",
                     headers={"Authorization": f"Bearer {tokens[users[i % len(users)]]}"})
                for i in range(side)
            ]
            loads.append(("direct-anonymous-mix", direct, stream_shows_caller))
            for name, calls, check in loads:
                result = run_load(f"{name} [{model.name}]", calls, check, concurrency=concurrency)
                print(result.line(), flush=True)
                for example in result.examples:
                    print(f"    {example}", flush=True)
                results.append(result)
            dead = stack.dead()
            if dead:
                print(f"[reliability] services died during the {model.name} run: {dead} (logs in {stack.log_dir})")
                results.append(LoadResult(f"dead services [{model.name}]", other_failures=len(dead)))
        finally:
            stack.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000, help="chained requests per worker model")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--models", default="sync,gthread,gevent", help="comma-separated worker models")
    parser.add_argument("--users", type=int, default=200, help="distinct users")
    args = parser.parse_args(argv)
    results = soak(args.requests, args.concurrency, [m.strip() for m in args.models.split(",")], args.users)
    total = sum(r.requests for r in results)
    bad = sum(r.crossovers + r.server_errors + r.other_failures for r in results)
    crossovers = sum(r.crossovers for r in results)
    server_errors = sum(r.server_errors for r in results)
    print(f"[reliability] soak total: requests={total} crossovers={crossovers} 5xx={server_errors} failures={bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
