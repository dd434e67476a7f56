"""Attestation challenges: random single-use nonces, each for one device and about two minutes.

A nonce is consumed atomically (``UPDATE … WHERE used_at IS NULL``), so two reports racing
with the same nonce cannot both be accepted. Spent and expired rows are kept for an hour
so that a replay is answered ``nonce_reused`` rather than ``nonce_unknown``, then purged.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from device_policy.attestation import generate_nonce
from device_policy.errors import NonceExpired, NonceMismatch, NonceReused, NonceUnknown
from server.devices.models import Device, DeviceChallenge
from server.devices.policy import ActivePolicy

CHALLENGE_TTL = timedelta(minutes=2)
KEEP_SPENT = timedelta(hours=1)
MAX_OUTSTANDING = 16


def issue_challenge(
    *, session: Session, device: Device, policy: ActivePolicy, now: datetime
) -> DeviceChallenge:
    """Store and return a fresh nonce for ``device`` against the current policy."""
    session.exec(delete(DeviceChallenge).where(col(DeviceChallenge.expires_at) < now - KEEP_SPENT))
    challenge = DeviceChallenge(
        nonce=generate_nonce(),
        device_id=device.id,
        policy_version=policy.version,
        policy_hash=policy.hash,
        issued_at=now,
        expires_at=now + CHALLENGE_TTL,
    )
    session.add(challenge)
    session.flush()
    _drop_oldest_outstanding(session=session, device_id=device.id, now=now)
    return challenge


def _drop_oldest_outstanding(*, session: Session, device_id: str, now: datetime) -> None:
    # Challenges are unauthenticated; bound how many one device can have open at once.
    outstanding = session.exec(
        select(DeviceChallenge.nonce)
        .where(DeviceChallenge.device_id == device_id)
        .where(col(DeviceChallenge.used_at).is_(None))
        .where(DeviceChallenge.expires_at > now)
        .order_by(col(DeviceChallenge.issued_at).desc(), col(DeviceChallenge.nonce))
        .offset(MAX_OUTSTANDING)
    ).all()
    if outstanding:
        session.exec(delete(DeviceChallenge).where(col(DeviceChallenge.nonce).in_(outstanding)))


def consume_challenge(*, session: Session, device_id: str, nonce: str, now: datetime) -> DeviceChallenge:
    """Spend the nonce once; refuse unknown, foreign, spent and expired nonces."""
    challenge = session.get(DeviceChallenge, nonce)
    if challenge is None:
        raise NonceUnknown("The report answers a challenge this server did not issue (or purged)")
    if challenge.device_id != device_id:
        raise NonceMismatch(f'The challenge was issued to another device, not "{device_id}"')
    if challenge.used_at is not None:
        raise NonceReused("The challenge has already been answered; ask for a new one")
    if challenge.expires_at <= now:
        late = int((now - challenge.expires_at).total_seconds())
        raise NonceExpired(f"The challenge expired {late} s ago; ask for a new one")
    spent = session.exec(
        update(DeviceChallenge)
        .where(col(DeviceChallenge.nonce) == nonce)
        .where(col(DeviceChallenge.used_at).is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # another request spent it between our read and our write
        raise NonceReused("The challenge has already been answered; ask for a new one")
    session.refresh(challenge)
    return challenge
