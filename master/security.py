"""Password and token hashing: what the web layer's users and the engine's workers both check.

Passwords are kept as salted scrypt hashes (``scrypt$n$r$p$salt$digest``, base64url without
padding); API tokens, 256 random bits, as a plain SHA-256.  Imports nothing of the master,
so every layer may use it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def b64(raw: bytes) -> str:
    """*raw* in base64url without padding (hashes, signed cookies)."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64(text: str) -> bytes:
    """The bytes of base64url *text* written by :func:`b64` (padding restored); ValueError if malformed."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """A salted scrypt hash of *password*, as stored in the users file and kept for workers."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + f"{b64(salt)}${b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Whether *password* matches a hash made by :func:`hash_password`."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(password.encode(), salt=unb64(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, unb64(digest))


def is_password_hash(value: str) -> bool:
    """Whether *value* parses as a hash made by :func:`hash_password` (``scrypt$n$r$p$salt$digest``)."""
    parts = value.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        for number in parts[1:4]:
            if int(number) <= 0:
                return False
        for text in parts[4:]:
            unb64(text)
    except ValueError:
        return False
    return True


def token_hash(token: str) -> str:
    """The hash an API token is kept as."""
    # tokens are 256 random bits: a plain SHA-256 is enough, no salt or stretching needed
    return hashlib.sha256(token.encode()).hexdigest()
