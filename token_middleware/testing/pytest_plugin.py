"""pytest plugin (``pytest11`` entry point ``token_middleware``): fixtures for protected views.

Fixtures:

``token_issuer``
    A :class:`~token_middleware.testing.LocalIssuer` with generated keys and its JWKS in a
    temporary file (keys generated once per session). Point your app at it with
    :func:`~token_middleware.testing.configure_flask` or
    :func:`~token_middleware.testing.override_django_settings`; no network is used.
``make_token``
    ``make_token(sub="alice", scopes=["orders:read"], **claims)`` mints a signed token from
    ``token_issuer``; ``expired=True``, ``audience="other"``, ``typ="JWT"``,
    ``unknown_key=True`` … give the usual bad variants; ``act=["orders-service"]`` an
    exchanged token's actor chain, nearest first.
``introspection_endpoint``
    A started :class:`~token_middleware.testing.servers.LoopbackIntrospection` (an RFC 7662
    endpoint on loopback), stopped after the test: ``endpoint.issue(scope=…)`` makes an opaque
    token, ``endpoint.settings()`` the settings that point a service at it.
``token_audience`` / ``token_issuer_url``
    The audience and issuer URL ``token_issuer`` uses; override them in your ``conftest.py``
    (any scope) to match your service, e.g. ``"orders-service"``.

This module is imported in every pytest run of an environment where token-middleware is
installed, so it imports nothing heavy at module level and no web framework at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from . import LocalIssuer
    from .servers import LoopbackIntrospection


@pytest.fixture
def token_audience() -> str:
    """The audience of ``token_issuer``: your service's ``AUDIENCE``."""
    from . import DEFAULT_AUDIENCE

    return DEFAULT_AUDIENCE


@pytest.fixture
def token_issuer_url() -> str:
    """The ``iss`` of tokens from ``token_issuer``."""
    from . import DEFAULT_ISSUER_URL

    return DEFAULT_ISSUER_URL


@pytest.fixture(scope="session")
def token_issuer_keys(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    """The keys (and JWKS file) behind ``token_issuer``, generated once per session."""
    from . import create_issuer

    return create_issuer(tmp_path_factory.mktemp("token-issuer"))


@pytest.fixture
def token_issuer(token_issuer_keys: LocalIssuer, token_issuer_url: str, token_audience: str) -> LocalIssuer:
    """A local issuer with generated keys; its JWKS file is ``token_issuer.jwks_path``."""
    return dataclasses.replace(token_issuer_keys, url=token_issuer_url, audience=token_audience)


@pytest.fixture
def make_token(token_issuer: LocalIssuer) -> Callable[..., str]:
    """``make_token(sub=..., scopes=..., **claims)``: a signed token from ``token_issuer``."""
    return token_issuer.mint


@pytest.fixture
def introspection_endpoint() -> Iterator[LoopbackIntrospection]:
    """An RFC 7662 introspection endpoint on loopback, for opaque tokens; stopped after the test."""
    from .servers import LoopbackIntrospection

    with LoopbackIntrospection() as endpoint:
        yield endpoint
