"""Every exception class of the package carries a stable, well-formed ``reason`` code.

The codes label metrics, the audit log, the hooks and ``token-middleware inspect``; they must be
short, bounded and one per meaning. The package is walked for real, so an exception class added
in any module (introspection, exchange, an adapter) is checked too.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from typing import Any

import pytest

import token_middleware
from token_middleware.core import errors
from token_middleware.core.errors import BearerError, TokenMiddlewareError

CODE = re.compile(r"^[a-z_]+$")

#: Pairs of classes that knowingly share one code because they mean the same thing. Empty on
#: purpose: add a pair only with a reason written next to it.
SAME_MEANING: frozenset[frozenset[str]] = frozenset()


def _package_classes() -> list[type[TokenMiddlewareError]]:
    found: dict[str, type[TokenMiddlewareError]] = {}
    for info in pkgutil.walk_packages(token_middleware.__path__, "token_middleware."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra that this environment lacks
            continue
        for obj in list(vars(module).values()):
            # type(obj), never isinstance: a lazy object (Django's settings) would set itself up.
            if not issubclass(type(obj), type):
                continue
            if issubclass(obj, TokenMiddlewareError) and obj.__module__.startswith("token_middleware"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


CLASSES = _package_classes()
BEARER = [cls for cls in CLASSES if issubclass(cls, BearerError)]


def test_the_walk_finds_the_whole_core_tree() -> None:
    core = {cls for cls in vars(errors).values() if inspect.isclass(cls) and issubclass(cls, TokenMiddlewareError)}
    assert core <= set(CLASSES)
    assert len(BEARER) >= 24


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__qualname__)
def test_every_class_has_a_well_formed_reason(cls: type[TokenMiddlewareError]) -> None:
    assert isinstance(cls.reason, str)
    assert CODE.fullmatch(cls.reason), cls.reason
    assert len(cls.reason) <= 32


@pytest.mark.parametrize("cls", BEARER, ids=lambda cls: cls.__qualname__)
def test_every_refusal_defines_its_own_reason(cls: type[BearerError]) -> None:
    # Inheriting the parent's code would silently merge two meanings in every dashboard.
    assert "reason" in vars(cls), f"{cls.__module__}.{cls.__qualname__} must set reason"


def test_reasons_are_unique_per_meaning() -> None:
    owners: dict[str, list[type[TokenMiddlewareError]]] = {}
    for cls in CLASSES:
        if "reason" in vars(cls):
            owners.setdefault(cls.reason, []).append(cls)
    clashes = {
        code: [c.__qualname__ for c in classes]
        for code, classes in owners.items()
        if len(classes) > 1 and frozenset(c.__qualname__ for c in classes) not in SAME_MEANING
    }
    assert clashes == {}


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.ExpiredToken, "expired"),
        (errors.InvalidSignature, "signature"),
        (errors.InvalidAudience, "audience"),
        (errors.InvalidIssuer, "issuer"),
        (errors.InvalidType, "type"),
        (errors.DisallowedAlgorithm, "algorithm"),
        (errors.MalformedToken, "malformed"),
        (errors.TokenTooLarge, "too_large"),
        (errors.UnknownKey, "unknown_key"),
        (errors.MissingClaim, "missing_claim"),
        (errors.InsufficientScope, "insufficient_scope"),
        (errors.KeysUnavailable, "keys_unavailable"),
        (errors.InvalidRequest, "invalid_request"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_the_codes_of_design_md(cls: type[BearerError], code: str) -> None:
    assert cls.reason == code


def test_an_instance_reports_its_class_code() -> None:
    assert errors.ExpiredToken(claim="exp").reason == "expired"
    assert errors.InsufficientScope(["a"]).reason == "insufficient_scope"


def test_inspect_names_the_reason_codes_of_the_failed_checks(
    token_issuer: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from token_middleware.cli import main

    token = token_issuer.mint(expired=True, audience="someone-else")
    status = main(["inspect", token, "--issuer", token_issuer.url, "--audience", token_issuer.audience,
                   "--public-keys", str(token_issuer.jwks_path)])
    out = capsys.readouterr().out
    assert status == 1
    assert "verdict: the token is REFUSED (2 check(s) failed; reason: audience, expired)." in out
    status = main(["inspect", token_issuer.mint(), "--issuer", token_issuer.url, "--audience",
                   token_issuer.audience, "--public-keys", str(token_issuer.jwks_path)])
    assert status == 0 and "reason:" not in capsys.readouterr().out
