"""The wire protocol's models, the token bucket, and presence compare-and-set (in memory and on Redis)."""

from __future__ import annotations

import json
import secrets
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from server.signalling.limits import SignallingLimits, TokenBucket
from server.signalling.presence import InMemoryPresence, Presence, RedisPresence
from server.signalling.protocol import (
    Admit,
    ClientMessage,
    CloseCode,
    ErrorCode,
    Hello,
    Ice,
    Offer,
    ParticipantEventType,
    ProtocolError,
    Relayed,
    RelayedIce,
    ServerMessage,
    parse_client_message,
    relay_frame,
)
from tests.support.services import port_open, service_missing


def frame(**fields: Any) -> str:
    return json.dumps({"v": 1, **fields})


def test_each_client_message_type_parses_into_its_model() -> None:
    assert isinstance(parse_client_message(frame(type="hello", join_token="t")), Hello)
    assert isinstance(parse_client_message(frame(type="admit", participant="room:r-1")), Admit)
    offer = parse_client_message(frame(type="offer", to="room:r-1", sdp="v=0", connection_id="abcdefgh"))
    assert isinstance(offer, Offer) and offer.sdp == "v=0"
    ice = parse_client_message(
        frame(type="ice", to="room:r-1", candidate="", sdpMid=None, sdpMLineIndex=None, usernameFragment=None)
    )
    assert isinstance(ice, Ice) and ice.candidate == ""


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        ("nope", ErrorCode.BAD_JSON, "The message is not valid JSON"),
        ('"text"', ErrorCode.INVALID_MESSAGE, "A message must be a JSON object"),
        (json.dumps({"v": 3, "type": "ping"}), ErrorCode.UNSUPPORTED_VERSION, None),
        (frame(type="<script>"), ErrorCode.UNKNOWN_TYPE, 'Unknown message type "?"'),
        (frame(type="offer", to="room:r", sdp="", connection_id="short"), ErrorCode.INVALID_MESSAGE,
         "Invalid offer message: connection_id, sdp"),
        (frame(type="hello"), ErrorCode.INVALID_MESSAGE, "Invalid hello message: join_token"),
    ],
)  # fmt: skip
def test_a_bad_frame_says_what_is_wrong_without_echoing_values(
    raw: str, code: ErrorCode, message: str | None
) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_client_message(raw)
    assert refused.value.code is code
    if message is not None:
        assert refused.value.message == message


def test_the_message_id_comes_back_as_ref_even_when_the_message_is_refused() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_client_message(frame(type="admit", id="x-1", participant="BAD ID"))
    assert refused.value.ref == "x-1"


def test_a_relayed_frame_is_the_validated_message_with_from() -> None:
    raw = frame(type="offer", id="m1", to="room:r-1", sdp="v=0\r\n\u00e9", connection_id="abcdefgh")
    parse_client_message(raw)
    relayed = json.loads(relay_frame(raw, "host:h-1"))
    assert relayed == {"from": "host:h-1", **json.loads(raw)}
    assert Relayed.model_validate(relayed).from_ == "host:h-1"
    ice_raw = frame(type="ice", to="room:r-1", candidate="candidate:1 1 udp 1 1.2.3.4 5 typ host", sdpMid="0")
    assert RelayedIce.model_validate_json(relay_frame(ice_raw, "host:h-1")).sdpMid == "0"


def test_the_token_bucket_allows_bursts_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 100
    assert bucket.tokens == 3


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        SignallingLimits(max_message_bytes=10)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[Presence]:
    if request.param == "memory":
        yield InMemoryPresence()
        return
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis on 127.0.0.1:6379")
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"telemed-test-{secrets.token_hex(6)}"
    try:
        yield RedisPresence(client, prefix=prefix, room_ttl_s=60, node_ttl_s=5)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_compare_and_set_lets_one_writer_win_and_orders_every_change(presence: Presence) -> None:
    first = await presence.cas("c1", "p:a", None, '{"s":1}')
    assert first.ok
    stored = await presence.get("c1", "p:a")
    assert stored == f"{first.rev}|" + '{"s":1}'

    # A writer that read "absent" loses, and learns what is there now.
    late = await presence.cas("c1", "p:a", None, '{"s":2}')
    assert (late.ok, late.current) == (False, stored)

    second = await presence.cas("c1", "p:a", stored, '{"s":3}')
    assert second.ok and second.rev > first.rev
    gone = await presence.cas("c1", "p:a", await presence.get("c1", "p:a"), None)
    assert gone.ok and gone.rev > second.rev
    assert await presence.snapshot("c1") == {}


async def test_restore_puts_back_only_an_absent_field_above_every_revision_seen(presence: Presence) -> None:
    # What a node does after Redis came back empty (server/signalling/recovery.py).
    kept = await presence.cas("c1", "p:kept", None, '{"s":1}')
    restored = await presence.restore("c1", "p:lost", '{"s":2}', floor=40)
    assert restored.ok and restored.rev > 40 and restored.rev > kept.rev
    assert await presence.get("c1", "p:lost") == f"{restored.rev}|" + '{"s":2}'
    # A field that is there is never overwritten: the caller learns its value.
    again = await presence.restore("c1", "p:kept", '{"s":9}', floor=0)
    assert (again.ok, again.current) == (False, f"{kept.rev}|" + '{"s":1}')
    # Later writes keep counting from above the restored revision.
    after = await presence.cas("c1", "p:kept", again.current, '{"s":3}')
    assert after.ok and after.rev > restored.rev


async def test_the_epoch_is_set_once_and_stays(presence: Presence) -> None:
    first = await presence.epoch("aaaa")
    assert await presence.epoch("bbbb") == first


async def test_node_heartbeats_say_who_is_alive(presence: Presence) -> None:
    await presence.node_heartbeat("n1")
    assert await presence.nodes_alive(["n1", "n2"]) == {"n1"}


async def test_presence_in_memory_forgets_consultations_nobody_touches() -> None:
    now = [0.0]
    presence = InMemoryPresence(room_ttl_s=60, clock=lambda: now[0])
    await presence.cas("old", "c", None, '{"state":"ended"}')
    await presence.cas("busy", "c", None, '{"state":"live"}')
    now[0] = 61
    await presence.touch(["busy"])
    assert await presence.snapshot("old") == {}
    assert await presence.snapshot("busy") != {}


def _message_types(base: type[BaseModel]) -> set[str]:
    found: set[str] = set()
    for cls in base.__subclasses__():
        field = cls.model_fields.get("type")
        if field is not None:
            found.update(typing.get_args(field.annotation))
        found |= _message_types(cls)
    return found


def test_docs_protocol_names_every_message_error_and_close_code() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
    types = _message_types(ClientMessage) | _message_types(ServerMessage)
    assert set(typing.get_args(ParticipantEventType)) <= types
    # The table lists `participant.joined` `…admitted` `…denied`…
    missing = [
        t for t in sorted(types) if f"`{t}`" not in doc and f"`…{t.removeprefix('participant.')}`" not in doc
    ]
    missing += [f"error {c.value}" for c in ErrorCode if f"| `{c.value}` |" not in doc]
    missing += [f"close {int(c)}" for c in CloseCode if f"| {int(c)} |" not in doc]
    assert missing == [], f"docs/protocol.md does not describe {missing}"
