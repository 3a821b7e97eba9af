"""The actor chain (RFC 8693 §4.1): read nearest first, checked by the validator, minted by the
test kit, shown by ``token-middleware inspect``."""

from __future__ import annotations

import io
from typing import Any

import pytest

from token_middleware.core.errors import InvalidClaim
from token_middleware.core.settings import Settings
from token_middleware.core.token import MAX_ACTORS, act_claim, parse_actors
from token_middleware.core.validator import TokenValidator


def nested(depth: int) -> dict[str, Any]:
    return act_claim([f"svc-{i}" for i in range(depth)]) or {}


CHAINS = [
    ("one", {"sub": "orders-service"}, ("orders-service",)),
    ("two", {"sub": "billing", "act": {"sub": "orders"}}, ("billing", "orders")),
    ("other-members-ignored", {"sub": "orders", "iss": "https://x", "act": {"sub": "gw", "client_id": "g"}},
     ("orders", "gw")),
    ("deepest-allowed", nested(MAX_ACTORS), tuple(f"svc-{i}" for i in range(MAX_ACTORS))),
]
MALFORMED = [
    ("string", "orders-service"),
    ("list", ["orders-service"]),
    ("empty-object", {}),
    ("sub-not-a-string", {"sub": 7}),
    ("sub-empty", {"sub": ""}),
    ("nested-malformed", {"sub": "orders", "act": {"sub": None}}),
    ("nested-not-an-object", {"sub": "orders", "act": "gateway"}),
    ("nested-null", {"sub": "orders", "act": None}),
    ("too-deep", nested(MAX_ACTORS + 1)),
    ("null", None),
]


@pytest.mark.parametrize(("act", "actors"), [c[1:] for c in CHAINS], ids=[c[0] for c in CHAINS])
def test_parse_actors_nearest_first(act: Any, actors: tuple[str, ...]) -> None:
    assert parse_actors(act) == actors


def test_act_claim_writes_what_parse_actors_reads() -> None:
    assert act_claim([]) is None
    assert act_claim(["a", "b", "c"]) == {"sub": "a", "act": {"sub": "b", "act": {"sub": "c"}}}
    assert parse_actors(act_claim(["a", "b", "c"])) == ("a", "b", "c")


@pytest.fixture
def validator(token_issuer: Any) -> TokenValidator:
    return TokenValidator(Settings.from_mapping(token_issuer.settings()))


@pytest.mark.parametrize(("act", "actors"), [c[1:] for c in CHAINS], ids=[c[0] for c in CHAINS])
def test_the_validator_accepts_a_chain_and_the_token_exposes_it(
    validator: TokenValidator, make_token: Any, act: Any, actors: tuple[str, ...]
) -> None:
    token = validator.validate(make_token(act=act))
    assert token.actors == actors
    assert token.actor == actors[0]


def test_no_act_claim_means_no_actors(validator: TokenValidator, make_token: Any) -> None:
    token = validator.validate(make_token())
    assert token.actors == () and token.actor is None


def mint_with_act(token_issuer: Any, act: Any) -> str:
    """A token whose ``act`` claim is exactly ``act`` (JSON null included)."""
    from token_middleware.core.issuer import TokenIssuer

    claims = TokenIssuer(token_issuer.url, token_issuer.key).claims(sub="alice", audience=token_issuer.audience)
    claims["act"] = act
    return token_issuer.key.sign(claims, {"typ": "at+jwt"})


@pytest.mark.parametrize("act", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_act_claim_is_refused_at_validation(validator: TokenValidator, token_issuer: Any, act: Any) -> None:
    with pytest.raises(InvalidClaim) as info:
        validator.validate(mint_with_act(token_issuer, act))
    assert info.value.claim == "act"
    assert "act claim" in info.value.description


def test_make_token_takes_a_list_or_one_actor(validator: TokenValidator, make_token: Any) -> None:
    assert validator.validate(make_token(act=["orders-service", "gateway"])).actors == ("orders-service", "gateway")
    assert validator.validate(make_token(act="orders-service")).actors == ("orders-service",)


def test_inspect_shows_the_chain(make_token: Any, token_issuer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from token_middleware.cli import main

    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    main(["inspect", make_token(sub="alice", act=["orders-service", "gateway"])])
    assert "actor chain (act, nearest first): orders-service <- gateway, acting for 'alice'" in out.getvalue()
    out.truncate(0)
    main(["inspect", mint_with_act(token_issuer, "orders-service")])
    assert "the act claim is malformed" in out.getvalue()
