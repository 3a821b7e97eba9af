"""The one base64url codec of the package: RFC 7515 §2 (unpadded, URL-safe alphabet).

Trusted: nothing. :func:`decode` is strict enough for a token's segments: it refuses padding,
any character outside the alphabet and non-canonical trailing bits, so that one byte string has
exactly one spelling. It raises ``ValueError`` on every such input.

Why not ``base64.urlsafe_b64decode``: it silently discards characters outside the alphabet and
accepts non-canonical encodings, which would let two different strings decode to one token.
``binascii`` does the decoding once the alphabet has been checked with ``bytes.translate``.
"""

from __future__ import annotations

import binascii

__all__ = ["decode", "encode"]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_ALPHABET_BYTES = _ALPHABET.encode()
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def encode(data: bytes) -> str:
    """``data`` as canonical, unpadded base64url text."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URLSAFE).decode("ascii")


def decode(text: str) -> bytes:
    """Strict RFC 7515 base64url: no padding, no other characters, canonical trailing bits."""
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("not base64url") from None
    if data.translate(None, _ALPHABET_BYTES):  # anything left is outside the alphabet
        raise ValueError("not base64url")
    rem = len(data) % 4
    if rem == 1:
        raise ValueError("impossible base64url length")
    if rem:
        # The unused low bits of the last character must be zero (canonical encoding).
        mask = 0x0F if rem == 2 else 0x03
        if _INDEX[text[-1]] & mask:
            raise ValueError("non-canonical base64url")
        data += b"=" * (4 - rem)
    # Safe without strict mode: every character was checked against the alphabet above.
    return binascii.a2b_base64(data.translate(_TO_STANDARD))
