"""The framework-free core: everything that decides whether a token is good, and nothing else.

It imports only the standard library, python-jose and cryptography; no Flask, Django, DRF,
requests, httpx or werkzeug (``tests/core/test_core_isolation.py`` proves it). The adapters
beside this package (:mod:`token_middleware.wsgi`, :mod:`~token_middleware.flask_ext`,
:mod:`~token_middleware.django_ext`, :mod:`~token_middleware.drf`,
:mod:`~token_middleware.requests_auth`, :mod:`~token_middleware.httpx_auth`,
:mod:`~token_middleware.instrument`, :mod:`~token_middleware.gateway`) only translate between
it and their framework.

=================== =========================================================================
module              its one job
=================== =========================================================================
``settings``        the configuration vocabulary (``TOKEN_MIDDLEWARE_<NAME>``), validated once
``errors``          one exception tree, each class carrying its RFC 6750 status and error code
``bearer``          finding the bearer token in a request (RFC 6750 §2)
``validator``       ``TokenValidator``: the strict compact-JWS policy and the verified cache
``explain``         ``explain()``: the validator's own steps, in words for the operator (inspect)
``strict_json``     JSON without duplicate names or NaN, and NumericDate numbers
``hooks``           the validator's extension points: ``is_revoked`` and ``claim_checks``
``observe``         watching: events, observers and spans (metrics and tracing plug in here)
``audit``           the audit log: one line per refusal, shared by every adapter
``keys``            verification keys: static files or a remote JWKS, cached and throttled
``introspection``   RFC 7662 introspection of opaque tokens, judged by the validator's checks
``_jose``           the only module that touches python-jose
``b64url``          the one base64url codec (RFC 7515 §2, unpadded)
``token``           ``AccessToken``, the value every adapter hands to views
``scopes``          scope checks and the ``require_scopes`` decorator vocabulary
``actors``          ``require_actor``: the service acting for the subject (RFC 8693 ``act``)
``context``         the per-request ``ContextVar`` holding the current token
``runtime``         ``Runtime``: the settings and validator one app owns (shared by adapters)
``responses``       RFC 6750 error bodies and ``WWW-Authenticate`` headers
``hosts``           the one host normaliser: ``FORWARD_TO`` entries and ``HostAllowlist``
``forwarding``      the decision whether an outgoing request may carry the token
``exchange``        per-hop token exchange (RFC 8693): the cached, single-flight client
``token_endpoint``  the token endpoint on the wire: the exchange request and its answers
``oauth_post``      the one form POST with client credentials (introspection and exchange)
``concurrency``     carrying the context into worker threads
``issuer``          signing tokens and publishing a JWKS (the gateway and the test kit)
=================== =========================================================================
"""
