"""TURN credentials: the coturn REST API scheme, validated inputs, and a real coturn's verdict."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aioice import stun, turn

from server.turn import (
    EndpointKind,
    InvalidParticipantId,
    InvalidTtl,
    TurnCredentialError,
    ice_policy_for,
    refresh_time,
    turn_credentials,
)
from tests.support.coturn import CoturnServer, running_coturn

NOW = datetime.fromtimestamp(1_700_000_000, tz=UTC)
URLS = ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"]


def test_username_is_expiry_then_participant_and_password_is_hmac_sha1() -> None:
    creds = turn_credentials(
        secret=b"s3cret", participant_id="alice", ttl=timedelta(minutes=10), now=NOW, urls=URLS
    )
    assert creds.username == "1700000600:alice"
    # Reference value, computed independently with:
    #   printf 1700000600:alice | openssl dgst -sha1 -hmac s3cret -binary | base64
    assert creds.credential == "bUIJIVaC05oyFgKsQvKAparqg1Q="
    assert creds.ttl_s == 600
    assert creds.urls == URLS
    assert creds.as_ice_server() == {
        "urls": URLS,
        "username": "1700000600:alice",
        "credential": "bUIJIVaC05oyFgKsQvKAparqg1Q=",
    }


def test_expiry_is_read_from_the_username() -> None:
    creds = turn_credentials(
        secret=b"s3cret", participant_id="alice", ttl=timedelta(hours=1), now=NOW, urls=URLS
    )
    assert creds.expires_at == 1_700_003_600


def test_renewal_is_due_minutes_before_expiry_or_a_third_of_a_short_ttl() -> None:
    # One hour: five minutes before; ten seconds: with a third of the TTL to spare.
    assert refresh_time(expires_at=10_000, ttl=timedelta(hours=1)) == 10_000 - 300
    assert refresh_time(expires_at=10_000, ttl=timedelta(seconds=9)) == 10_000 - 3
    assert refresh_time(expires_at=10_000, ttl=timedelta(hours=1), lead=timedelta(minutes=10)) == 9_400


def test_password_never_appears_in_repr() -> None:
    creds = turn_credentials(
        secret=b"s3cret", participant_id="alice", ttl=timedelta(minutes=10), now=NOW, urls=URLS
    )
    assert creds.credential not in repr(creds)


def test_different_participants_and_secrets_get_different_passwords() -> None:
    def password(secret: bytes, pid: str) -> str:
        return turn_credentials(
            secret=secret, participant_id=pid, ttl=timedelta(minutes=1), now=NOW, urls=URLS
        ).credential

    assert password(b"a", "p1") != password(b"a", "p2")
    assert password(b"a", "p1") != password(b"b", "p1")


@pytest.mark.parametrize("participant_id", ["", "room:1", "a b", "caf\u00e9", "tab\tbed", "x" * 129])
def test_participant_ids_coturn_would_misread_are_refused(participant_id: str) -> None:
    with pytest.raises(InvalidParticipantId) as info:
        turn_credentials(
            secret=b"s", participant_id=participant_id, ttl=timedelta(minutes=1), now=NOW, urls=URLS
        )
    assert info.value.code == "invalid_participant_id"
    assert info.value.status == 422


@pytest.mark.parametrize(
    "ttl", [timedelta(0), timedelta(seconds=-5), timedelta(milliseconds=500), timedelta(days=2)]
)
def test_ttl_must_be_positive_and_at_most_a_day(ttl: timedelta) -> None:
    with pytest.raises(InvalidTtl):
        turn_credentials(secret=b"s", participant_id="p", ttl=ttl, now=NOW, urls=URLS)


def test_naive_now_empty_secret_and_no_urls_are_refused() -> None:
    ttl = timedelta(minutes=1)
    with pytest.raises(TurnCredentialError, match="timezone-aware"):
        turn_credentials(secret=b"s", participant_id="p", ttl=ttl, now=NOW.replace(tzinfo=None), urls=URLS)
    with pytest.raises(TurnCredentialError, match="secret is empty"):
        turn_credentials(secret=b"", participant_id="p", ttl=ttl, now=NOW, urls=URLS)
    with pytest.raises(TurnCredentialError, match="url"):
        turn_credentials(secret=b"s", participant_id="p", ttl=ttl, now=NOW, urls=[])


def test_prison_endpoints_are_relay_only_and_specialists_may_connect_directly() -> None:
    assert ice_policy_for(EndpointKind.ROOM_ENDPOINT) == "relay"
    assert ice_policy_for("prison_laptop") == "relay"
    assert ice_policy_for(EndpointKind.SPECIALIST_BROWSER) == "all"
    with pytest.raises(TurnCredentialError, match='Unknown endpoint kind "toaster"'):
        ice_policy_for("toaster")


# --- against a real coturn -------------------------------------------------------------


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoturnServer]:
    with running_coturn(Path(tmp_path_factory.mktemp("coturn"))) as server:
        yield server


async def _allocate(server: CoturnServer, username: str, password: str) -> tuple[str, int]:
    """Ask coturn for a relay allocation; returns the relayed address."""
    transport, _protocol = await asyncio.wait_for(
        turn.create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=(server.host, server.port),
            username=username,
            password=password,
        ),
        timeout=10,
    )
    try:
        host, port = transport.get_extra_info("sockname")
        return str(host), int(port)
    finally:
        transport.close()


@pytest.mark.coturn
async def test_coturn_grants_a_relay_for_fresh_credentials(coturn: CoturnServer) -> None:
    creds = turn_credentials(
        secret=coturn.secret,
        participant_id="room-7",
        ttl=timedelta(minutes=5),
        now=datetime.now(UTC),
        urls=[coturn.url],
    )
    host, port = await _allocate(coturn, creds.username, creds.credential)
    assert host == "127.0.0.1"
    assert port > 0
    assert f"username=<{creds.username}>" in coturn.logs()


@pytest.mark.coturn
@pytest.mark.parametrize("case", ["wrong_secret", "expired"])
async def test_coturn_refuses_wrong_or_expired_credentials(coturn: CoturnServer, case: str) -> None:
    now = datetime.now(UTC)
    creds = turn_credentials(
        secret=b"not-the-secret" if case == "wrong_secret" else coturn.secret,
        participant_id="room-7",
        ttl=timedelta(minutes=5),
        now=now if case == "wrong_secret" else now - timedelta(hours=1),
        urls=[coturn.url],
    )
    with pytest.raises(stun.TransactionFailed, match="401"):
        await _allocate(coturn, creds.username, creds.credential)


OpenAllocation = Callable[[str, str], Awaitable[turn.TurnClientUdpProtocol]]


@pytest.fixture
async def live_allocation(coturn: CoturnServer) -> AsyncIterator[OpenAllocation]:
    """Open allocations the way a live peer connection holds one; deleted after the test."""
    opened: list[turn.TurnClientUdpProtocol] = []

    async def open_allocation(username: str, password: str) -> turn.TurnClientUdpProtocol:
        server = (coturn.host, coturn.port)
        _transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: turn.TurnClientUdpProtocol(
                server, username=username, password=password, lifetime=600, channel_refresh_time=500
            ),
            remote_addr=server,
        )
        opened.append(protocol)
        await asyncio.wait_for(protocol.connect(), timeout=10)
        return protocol

    yield open_allocation
    for protocol in opened:
        await asyncio.wait_for(protocol.delete(), timeout=10)


async def _until_expired(expires_at: int) -> None:
    """Wait until coturn considers credentials expiring at ``expires_at`` expired (now > expiry)."""
    while time.time() < expires_at + 1:
        await asyncio.sleep(0.1)


@pytest.mark.coturn
async def test_after_expiry_a_new_allocation_needs_renewed_credentials(
    coturn: CoturnServer, live_allocation: OpenAllocation
) -> None:
    ttl = timedelta(seconds=2)
    welcome = turn_credentials(
        secret=coturn.secret, participant_id="room-8", ttl=ttl, now=datetime.now(UTC), urls=[coturn.url]
    )
    # A peer connection made while the credentials were valid holds its allocation.
    live = await live_allocation(welcome.username, welcome.credential)
    await _until_expired(welcome.expires_at)

    # A recovery (a fresh peer connection) with the welcome's credentials gets no relay.
    with pytest.raises(stun.TransactionFailed, match="401"):
        await _allocate(coturn, welcome.username, welcome.credential)

    # With the renewal the hub sends before expiry, it does.
    renewed = turn_credentials(
        secret=coturn.secret, participant_id="room-8", ttl=ttl, now=datetime.now(UTC), urls=[coturn.url]
    )
    assert renewed.expires_at > welcome.expires_at
    await _allocate(coturn, renewed.username, renewed.credential)
    assert f"user <{renewed.username}>: incoming packet ALLOCATE processed, success" in coturn.logs()

    # coturn checks the expiry only when an allocation is made: the allocation made before
    # expiry is still refreshed, so live media is not cut when its credentials expire.
    refresh = stun.Message(message_method=stun.Method.REFRESH, message_class=stun.Class.REQUEST)
    refresh.attributes["LIFETIME"] = 600
    response, _ = await asyncio.wait_for(live.request_with_retry(refresh), timeout=10)
    assert response.attributes["LIFETIME"] > 0
