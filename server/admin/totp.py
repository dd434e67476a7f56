"""TOTP (RFC 6238) for the admin console's second factor, with pyotp, and its QR code with segno.

Parameters are the ones every authenticator app supports: HMAC-SHA1, 6 digits, 30-second
steps, a 160-bit random secret (32 base32 characters). A code is accepted for the current
step and one step either side (clock drift of up to 30 s), and only for a step later than
the last one accepted for that admin: the same code twice, or an older one, is a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from datetime import datetime

import pyotp
import segno

DIGITS = 6
PERIOD_S = 30
ALGORITHM = "SHA1"
WINDOW = 1  # steps accepted either side of the current one
SECRET_CHARS = 32  # base32 characters: 160 bits


def new_secret() -> str:
    """A random base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(length=SECRET_CHARS)


def _totp(secret: str, issuer: str | None = None) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, digest=hashlib.sha1, interval=PERIOD_S, issuer=issuer)


def normalise_code(code: str) -> str | None:
    """The code as six digits (spaces and dashes people type are dropped), or None if it is not one."""
    digits = "".join(ch for ch in code if ch not in " -")
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


def current_step(now: datetime) -> int:
    """The RFC 6238 time step ``now`` falls in."""
    return int(now.timestamp()) // PERIOD_S


def code_at(secret: str, step: int) -> str:
    """The code for one time step (what an authenticator app shows then)."""
    return _totp(secret).generate_otp(step)


def matching_step(secret: str, code: str, *, now: datetime) -> int | None:
    """The time step (within the window) whose code is ``code``, or None."""
    digits = normalise_code(code)
    if digits is None:
        return None
    current = current_step(now)
    found: int | None = None
    # Every step in the window is checked, so the time taken does not say which one matched.
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(code_at(secret, step), digits) and found is None:
            found = step
    return found


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/…`` URI an authenticator app reads from the QR code."""
    return _totp(secret, issuer=issuer).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str, *, title: str) -> bytes:
    """The URI as a QR code in SVG (black on white, quiet zone of 4 modules), with a title."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out, kind="svg", xmldecl=False, scale=6, border=4, dark="#000000", light="#ffffff", title=title
    )
    return out.getvalue()
