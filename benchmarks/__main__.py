"""``python -m benchmarks``: run the figures and print one table of ratios, targets and verdicts.

Options: ``--quick`` (short rounds, for a smoke run), ``--only NAME[,NAME]`` (``cold``, ``cache``,
``http``, ``gateway``, ``jwks``, ``metrics``, ``exchange``, ``django``, ``peers``; ``micro`` = ``cold,cache``; ``server`` = ``http,gateway``),
``--rounds N``, ``--duration S`` (seconds per HTTP round / JWKS phase), ``--profile`` (cProfile
the cold path even when its target is met), ``--markdown`` (the table as Markdown, for
docs/benchmarks.md) and ``--json PATH`` (every row with its raw numbers).

The exit status is 0 when every figure ran (met or missed: a miss is a finding, not a crash),
1 when a figure crashed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from . import cache, cold, django_http, exchange, gateway, http, jwks, metrics, peers
from ._common import Options, Row, load_average, machine
from ._http import Skip

FIGURES: dict[str, tuple[str, Callable[[Options, argparse.Namespace], list[Row]]]] = {
    "cold": ("a", lambda o, a: cold.run(o, force_profile=a.profile)),
    "cache": ("b", lambda o, a: cache.run(o)),
    "http": ("c", lambda o, a: http.run(o)),
    "gateway": ("d", lambda o, a: gateway.run(o)),
    "jwks": ("e", lambda o, a: jwks.run(o)),
    "metrics": ("f", lambda o, a: metrics.run(o)),
    "exchange": ("g", lambda o, a: exchange.run(o)),
    "peers": ("h", lambda o, a: peers.run(o)),
    "django": ("i", lambda o, a: django_http.run(o)),
}
GROUPS = {"micro": ("cold", "cache"), "server": ("http", "gateway"), "all": tuple(FIGURES)}


def selected(only: Sequence[str]) -> list[str]:
    names: list[str] = []
    for part in (p.strip() for item in only for p in item.split(",")):
        if not part:
            continue
        expansion = GROUPS.get(part, (part,))
        for name in expansion:
            if name not in FIGURES:
                raise SystemExit(f"unknown figure {part!r}; choose from {', '.join([*FIGURES, *GROUPS])}")
            if name not in names:
                names.append(name)
    return names or list(FIGURES)


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    header = ("fig", "measurement", "value", "target", "verdict", "details")
    cells = [(r.figure, r.name, r.value, r.target, r.verdict, r.note) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.strip().replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(header)]
    widths[-1] = 0

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

    return "\n".join([fmt(header), fmt(tuple("-" * w for w in widths[:-1]) + ("-" * 7,)), *map(fmt, cells)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short rounds: a smoke run, not a measurement")
    parser.add_argument("--only", action="append", default=[], metavar="NAME[,NAME]",
                        help=f"figures to run: {', '.join(FIGURES)}, or a group: {', '.join(GROUPS)}")
    parser.add_argument("--rounds", type=int, metavar="N", help="alternating rounds per comparison")
    parser.add_argument("--duration", type=float, metavar="S", help="seconds per HTTP round / JWKS phase")
    parser.add_argument("--profile", action="store_true", help="profile cold validation even when on target")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", metavar="PATH", help="also write every row, with raw numbers, to PATH")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1 or args.duration is not None and args.duration <= 0:
        parser.error("--rounds and --duration must be positive")
    options = Options(quick=args.quick, rounds=args.rounds, duration=args.duration)
    names = selected(args.only)

    info = machine()
    print("token-middleware benchmarks" + (" (--quick: a smoke run, not a measurement)" if args.quick else ""))
    print("; ".join(f"{k}: {v}" for k, v in info.items()))
    rows: list[Row] = []
    crashed = False
    started = time.monotonic()
    for name in names:
        figure, runner = FIGURES[name]
        t0 = time.monotonic()
        print(f"… {name} ({figure})", file=sys.stderr, flush=True)
        try:
            rows += runner(options, args)
        except Skip as exc:
            rows.append(Row(figure, f"{name}: skipped", "skipped", note=str(exc)))
        except Exception:  # noqa: BLE001 - report the crash, run the other figures
            crashed = True
            traceback.print_exc()
            rows.append(Row(figure, f"{name}: crashed", "error", note="see the traceback above"))
        print(f"  {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    print()
    print(format_table(rows, markdown=args.markdown))
    for row in rows:
        details = row.data.get("details")
        if details:
            print()
            print("\n".join(details))
    print(f"\ntotal {time.monotonic() - started:.0f} s; load average at the end: {load_average()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "rows": [
                {"figure": r.figure, "name": r.name.strip(), "value": r.value, "target": r.target,
                 "verdict": r.verdict, "note": r.note, "data": dict(r.data)} for r in rows]}, fh, indent=2)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
