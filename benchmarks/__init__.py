"""Benchmarks for token-middleware: ratios measured side by side, in one run.

Run everything with ``python -m benchmarks`` (or ``./run bench``); ``--help`` lists the options.
Every figure compares the code under test with a baseline measured in the same run, alternating
between the two to cancel drift, and reports the median of the per-round ratios. Absolute times
are printed for context only: they depend on the machine, the ratios much less.

Figures (one module each):

* ``cold``  (a) cold validation (cache off) against a raw ``cryptography`` verify, RS256/ES256;
* ``cache`` (b) a verified-cache hit, in microseconds;
* ``http``  (c) gunicorn + wrk: the orders service with the middleware against a bare Flask app;
* ``gateway`` (d) a gateway hop and the nginx ``auth_request`` mode against a direct call;
* ``jwks``  (e) JWKS fetches in steady state and under a flood of unknown ``kid``s.

What is trusted: nothing here is security-relevant. Keys and tokens are made fresh per run;
servers listen on 127.0.0.1 only, on free ports, and are always stopped. Tokens are never printed.
This package is not part of the timed test suite; ``tests/test_benchmarks_smoke.py`` only checks
that it runs.
"""

from __future__ import annotations
