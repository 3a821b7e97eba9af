"""Hostile input, property-based (hypothesis): the Authorization parser, the scope parser and
random mutations of valid tokens. Nothing raises anything but the documented refusals."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support import Kit

from token_middleware.core.bearer import extract_token, parse_authorization
from token_middleware.core.errors import InvalidRequest, InvalidToken, KeysUnavailable
from token_middleware.core.scopes import parse_scopes
from token_middleware.core.validator import TokenValidator

B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MODERATE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

header_text = st.one_of(
    st.text(max_size=200),
    st.builds(lambda scheme, sep, rest: scheme + sep + rest,
              st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Bearer,", "DPoP", ""]),
              st.sampled_from([" ", "  ", "\t", "", ",", " , "]),
              st.text(alphabet=st.characters(codec="ascii"), max_size=120)),
)


@MODERATE
@given(header=header_text)
def test_authorization_parser_returns_a_b64token_none_or_invalid_request(header: str) -> None:
    try:
        result = parse_authorization(header)
    except InvalidRequest as err:
        assert err.status_code == 400
        return
    assert result is None or B64TOKEN.fullmatch(result)


@MODERATE
@given(header=st.one_of(st.none(), header_text), query=st.text(max_size=120), allow=st.booleans())
def test_extract_token_only_raises_invalid_request(header: str | None, query: str, allow: bool) -> None:
    try:
        result = extract_token(header, query, allow_query=allow)
    except InvalidRequest:
        return
    assert result is None or B64TOKEN.fullmatch(result)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@MODERATE
@given(claims=st.dictionaries(st.sampled_from(["scope", "scp", "roles", "x"]), json_values),
       names=st.lists(st.sampled_from(["scope", "scp", "missing"]), max_size=3))
def test_parse_scopes_never_raises(claims: dict[str, Any], names: list[str]) -> None:
    scopes = parse_scopes(claims, names)
    assert isinstance(scopes, frozenset)
    assert all(isinstance(s, str) and s and not any(c.isspace() for c in s) for s in scopes)


def _mutate(token: str, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["flip", "truncate", "swap", "insert", "delete", "replace-segment", "dup-segment"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(token) - 1))
        bit = data.draw(st.integers(0, 6))
        return token[:i] + chr((ord(token[i]) ^ (1 << bit)) & 0x7F) + token[i + 1:]
    if kind == "truncate":
        return token[: data.draw(st.integers(0, len(token) - 1))]
    if kind == "insert":
        i = data.draw(st.integers(0, len(token)))
        return token[:i] + data.draw(st.text(min_size=1, max_size=4)) + token[i:]
    if kind == "delete":
        i = data.draw(st.integers(0, len(token) - 1))
        return token[:i] + token[i + 1:]
    parts = token.split(".")
    if kind == "swap":
        i, j = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
        parts[i], parts[j] = parts[j], parts[i]
    elif kind == "replace-segment":
        parts[data.draw(st.integers(0, 2))] = data.draw(st.text(alphabet="ABCDEFGHabcdefgh0123456789-_=+/.", max_size=60))
    else:
        i = data.draw(st.integers(0, 2))
        parts.insert(i, parts[i])
    return ".".join(parts)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
@MODERATE
@given(data=st.data())
def test_mutated_tokens_are_never_accepted(alg: str, data: st.DataObject, rsa_key: Any, ec_key: Any,
                                           make_validator: Any, clock: Any) -> None:
    key = rsa_key if alg == "RS256" else ec_key
    kit = Kit(key=key, other=key, clock=clock)
    original = kit.token()
    validator: TokenValidator = make_validator(cache_size=64)
    assert validator.validate(original).subject == "alice"
    mutated = _mutate(original, data)
    try:
        validator.validate(mutated)
    except KeysUnavailable:  # pragma: no cover - impossible with static keys; fail loudly
        raise
    except InvalidToken:
        return
    assert mutated == original, "a mutated token was accepted"
