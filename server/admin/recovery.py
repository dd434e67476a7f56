"""Recovery codes: ten single-use codes shown once at enrolment, for an admin without their phone.

Format: 16 characters of Crockford's base32 (``0-9 a-z`` without ``i l o u``) in four groups,
``7k2m-9qxd-4hrt-b8we``: 80 random bits each, so the SHA-256 of the normalised code is
enough to store (nobody can search 2^80 codes). When checked, case, spaces and dashes do not
matter and the look-alikes ``o``, ``i``, ``l`` read as ``0``, ``1``, ``1``. Using one is a
conditional update, so of two sign-ins racing with the same code exactly one wins.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from server.admin.models import AdminRecoveryCode

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
GROUPS = 4
GROUP_CHARS = 4
COUNT = 10
_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})


def new_code() -> str:
    """One random recovery code, grouped for reading aloud."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_CHARS))
    return "-".join(chars[i : i + GROUP_CHARS] for i in range(0, len(chars), GROUP_CHARS))


def normalise(code: str) -> str | None:
    """The code as 16 alphabet characters, or None if it cannot be one."""
    text = "".join(ch for ch in code.lower() if ch not in " -").translate(_LOOKALIKES)
    if len(text) != GROUPS * GROUP_CHARS or any(ch not in ALPHABET for ch in text):
        return None
    return text


def code_hash(code: str) -> str:
    """What is stored for a (normalised) code."""
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def replace_codes(*, session: Session, user_id: str) -> list[str]:
    """Drop the user's codes and make ten new ones; returns them (the only time they are seen)."""
    session.connection().execute(delete(AdminRecoveryCode).where(col(AdminRecoveryCode.user_id) == user_id))
    codes = [new_code() for _ in range(COUNT)]
    for code in codes:
        normal = normalise(code)
        assert normal is not None  # noqa: S101 - made from the alphabet above
        session.add(AdminRecoveryCode(user_id=user_id, code_hash=code_hash(normal)))
    session.flush()
    return codes


def use_code(*, session: Session, user_id: str, code: str, now: datetime) -> bool:
    """Spend one of the user's unused codes; False if it is not one (or was used already)."""
    normal = normalise(code)
    if normal is None:
        return False
    spent = session.connection().execute(
        update(AdminRecoveryCode)
        .where(
            col(AdminRecoveryCode.user_id) == user_id,
            col(AdminRecoveryCode.code_hash) == code_hash(normal),
            col(AdminRecoveryCode.used_at).is_(None),
        )
        .values(used_at=now)
    )
    return spent.rowcount == 1


def codes_left(*, session: Session, user_id: str) -> int:
    """How many unused recovery codes the user has."""
    return int(
        session.exec(
            select(func.count())
            .select_from(AdminRecoveryCode)
            .where(AdminRecoveryCode.user_id == user_id, col(AdminRecoveryCode.used_at).is_(None))
        ).one()
    )


def drop_codes(*, session: Session, user_id: str) -> None:
    """Remove every recovery code of the user (their second factor is being reset)."""
    session.connection().execute(delete(AdminRecoveryCode).where(col(AdminRecoveryCode.user_id) == user_id))
