"""Strict JSON for token headers, payloads and authorization-server answers.

RFC 7515 §4 and RFC 7519 §4: duplicate member names are refused, not "last one wins"
(``{"active": false, "active": true}`` must never read as active), and the non-JSON constants
``NaN`` and ``Infinity`` that Python's decoder accepts are refused too. Numeric dates are JSON
numbers within the safe-integer range, never booleans or strings.

Trusted: nothing; every byte comes from a token or from the network.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import MalformedToken

#: JSON's safe-integer range; it also keeps float() and the time functions safe.
MAX_TIME = 2**53


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate member name")
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: A decoder that refuses duplicate member names and NaN/Infinity (raises ``ValueError``).
DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a JSON object, or :class:`MalformedToken` naming ``what`` (``"header"``, …)."""
    try:
        value = DECODER.decode(data.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise MalformedToken(f"the token {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedToken(f"the token {what} is not a JSON object")
    return value


def is_number(value: Any) -> bool:
    """A JSON number usable as a NumericDate: not a bool, not a string, finite and in range."""
    if type(value) is int:
        return -MAX_TIME <= value <= MAX_TIME
    return type(value) is float and math.isfinite(value) and -MAX_TIME <= value <= MAX_TIME
