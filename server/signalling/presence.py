"""Who is in which consultation: one record per participant, shared by every server node.

A consultation's presence is a hash of fields (Redis: one hash per consultation with a TTL):

* ``p:<participant id>`` — a :class:`ParticipantRecord` (role, name, status, which node and
  socket holds it, whether it is connected, the hash of its resume token);
* ``c`` — the consultation state as the hub last saw it (``open``, ``live``, ``ended``);
* ``_rev`` — a counter bumped by every write.

Every write is a compare-and-set of one field (:meth:`Presence.cas`): it succeeds only if the
field still holds what the writer read, so two nodes deciding at once (admit vs. deny, a
resume on node B while node A expires the grace period) cannot both win. The stored value
is ``"<rev>|<json>"``: the revision orders the change events that nodes broadcast, so a
node applying events from several publishers never goes back to an older record.

Nodes also register themselves (``node:<id>`` with a short TTL) so that records held by a
node that died without closing its sockets can be found and timed out by the others.

Redis may restart empty (no persistence: presence is short-lived by design). An ``epoch``
key, set once by whichever node gets there first, tells the nodes that happened: a node
that finds a new epoch puts back what it knows (:meth:`Presence.restore`, only fields that
are gone, above every revision it has seen) — see :mod:`server.signalling.recovery`.
A store that cannot be reached raises :class:`PresenceUnavailable`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Protocol, Self

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.signalling.protocol import ParticipantView, Role

RecordStatus = Literal["waiting", "admitted", "suspended", "denied"]
EPOCH_KEY = "epoch"
PARTICIPANT_PREFIX = "p:"
CONSULTATION_FIELD = "c"

# Compare-and-set of one hash field. Returns {rev, ""} on success, {0, current} otherwise.
_CAS_SCRIPT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == false then cur = '' end
if cur ~= ARGV[2] then return {0, cur} end
local rev = redis.call('HINCRBY', KEYS[1], '_rev', 1)
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], rev .. '|' .. ARGV[3])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {rev, ''}
"""

# Put a lost field back: only if it is absent, at a revision above ``floor`` (ARGV[3]) so that
# every node's cache takes it. Returns {rev, ""} when written, {0, current} otherwise.
_RESTORE_SCRIPT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur ~= false then return {0, cur} end
local rev = redis.call('HGET', KEYS[1], '_rev')
if rev == false then rev = 0 else rev = tonumber(rev) end
if rev < tonumber(ARGV[3]) then rev = tonumber(ARGV[3]) end
rev = rev + 1
redis.call('HSET', KEYS[1], '_rev', rev, ARGV[1], rev .. '|' .. ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {rev, ''}
"""


class PresenceUnavailable(Exception):
    """The presence store cannot be reached (Redis down or restarting)."""


@dataclass(frozen=True)
class ParticipantRecord:
    """One participant of one consultation, as every node sees it."""

    id: str
    role: Role
    name: str
    status: RecordStatus
    device_id: str | None
    node: str
    conn: str
    connected: bool
    resume_hash: str
    # When the status or connection last changed (wall clock, seconds): the grace period
    # of a disconnected participant runs from here.
    since: float
    join_jti: str = ""

    def to_json(self) -> str:
        """The stored form (without the revision, which the store adds)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Read a stored record."""
        data: dict[str, Any] = json.loads(text)
        return cls(**data)

    def view(self) -> ParticipantView:
        """What other participants may know."""
        status = self.status if self.status != "denied" else "waiting"
        return ParticipantView(
            id=self.id, role=self.role, name=self.name, status=status, connected=self.connected
        )

    def evolve(self, **changes: Any) -> ParticipantRecord:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Stored:
    """A field's raw stored value and what it decodes to."""

    raw: str
    rev: int
    body: str

    @classmethod
    def parse(cls, raw: str) -> Stored:
        """Split ``"<rev>|<json>"``."""
        rev, _, body = raw.partition("|")
        return cls(raw=raw, rev=int(rev), body=body)


@dataclass(frozen=True)
class CasResult:
    """Outcome of a compare-and-set: the new revision, or what the field holds now."""

    ok: bool
    rev: int
    current: str | None


class Presence(Protocol):
    """Consultation presence shared by the nodes (in memory for one process, Redis for many)."""

    async def snapshot(self, consultation_id: str) -> dict[str, str]:
        """Every field of a consultation's hash, raw."""
        ...

    async def get(self, consultation_id: str, field: str) -> str | None:
        """One field, raw (None when absent)."""
        ...

    async def cas(self, consultation_id: str, field: str, expected: str | None, new: str | None) -> CasResult:
        """Set (or delete, ``new=None``) ``field`` if it still holds ``expected`` (None: absent)."""
        ...

    async def restore(self, consultation_id: str, field: str, body: str, floor: int) -> CasResult:
        """Put ``field`` back with ``body`` if it is absent, at a revision above ``floor``."""
        ...

    async def epoch(self, candidate: str) -> str:
        """The store's epoch (``candidate`` if it has none yet); a new one means the store was emptied."""
        ...

    async def touch(self, consultation_ids: Iterable[str]) -> None:
        """Keep these consultations' presence alive (reset the TTL)."""
        ...

    async def node_heartbeat(self, node: str) -> None:
        """Say this node is alive for the next little while."""
        ...

    async def nodes_alive(self, nodes: Iterable[str]) -> set[str]:
        """Which of ``nodes`` have sent a heartbeat recently."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (readiness)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class InMemoryPresence:
    """Presence for one process (the embedded default; also shared by hubs in one test)."""

    def __init__(
        self, *, room_ttl_s: float = 3600.0, node_ttl_s: float = 15.0, clock: Any = time.monotonic
    ) -> None:
        self._rooms: dict[str, dict[str, str]] = {}
        self._revs: dict[str, int] = {}
        self._touched: dict[str, float] = {}
        self._nodes: dict[str, float] = {}
        self._epoch: str | None = None
        self._room_ttl_s = room_ttl_s
        self._node_ttl_s = node_ttl_s
        self._clock = clock

    async def snapshot(self, consultation_id: str) -> dict[str, str]:
        return dict(self._rooms.get(consultation_id, {}))

    async def get(self, consultation_id: str, field: str) -> str | None:
        return self._rooms.get(consultation_id, {}).get(field)

    async def cas(self, consultation_id: str, field: str, expected: str | None, new: str | None) -> CasResult:
        room = self._rooms.setdefault(consultation_id, {})
        current = room.get(field)
        if current != expected:
            return CasResult(ok=False, rev=0, current=current)
        rev = self._revs.get(consultation_id, 0) + 1
        self._revs[consultation_id] = rev
        self._touched[consultation_id] = self._clock()
        if new is None:
            room.pop(field, None)
        else:
            room[field] = f"{rev}|{new}"
        return CasResult(ok=True, rev=rev, current=None)

    async def restore(self, consultation_id: str, field: str, body: str, floor: int) -> CasResult:
        room = self._rooms.setdefault(consultation_id, {})
        if field in room:
            return CasResult(ok=False, rev=0, current=room[field])
        rev = max(self._revs.get(consultation_id, 0), floor) + 1
        self._revs[consultation_id] = rev
        self._touched[consultation_id] = self._clock()
        room[field] = f"{rev}|{body}"
        return CasResult(ok=True, rev=rev, current=None)

    async def epoch(self, candidate: str) -> str:
        if self._epoch is None:
            self._epoch = candidate
        return self._epoch

    async def touch(self, consultation_ids: Iterable[str]) -> None:
        now = self._clock()
        for cid in consultation_ids:
            self._touched[cid] = now
        # Like the Redis hash's TTL: forget consultations nobody has touched for a while.
        for cid, at in list(self._touched.items()):
            if now - at > self._room_ttl_s:
                self._rooms.pop(cid, None)
                self._touched.pop(cid, None)

    async def node_heartbeat(self, node: str) -> None:
        self._nodes[node] = self._clock() + self._node_ttl_s

    async def nodes_alive(self, nodes: Iterable[str]) -> set[str]:
        now = self._clock()
        return {n for n in nodes if self._nodes.get(n, 0.0) > now}

    def forget_node(self, node: str) -> None:
        """Drop a node's heartbeat (tests: a node that died)."""
        self._nodes.pop(node, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisPresence:
    """Presence in Redis: a hash per consultation (``<prefix>:room:<id>``) with a TTL.

    Every method raises :class:`PresenceUnavailable` when Redis cannot be reached.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        room_ttl_s: int = 3600,
        node_ttl_s: int = 15,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._room_ttl_s = room_ttl_s
        self._node_ttl_s = node_ttl_s
        self._cas = client.register_script(_CAS_SCRIPT)
        self._restore = client.register_script(_RESTORE_SCRIPT)

    def _key(self, consultation_id: str) -> str:
        return f"{self._prefix}:room:{consultation_id}"

    async def snapshot(self, consultation_id: str) -> dict[str, str]:
        async with _reachable():
            raw: dict[Any, Any] = await self._redis.hgetall(self._key(consultation_id))
        return {_text(k): _text(v) for k, v in raw.items() if _text(k) != "_rev"}

    async def get(self, consultation_id: str, field: str) -> str | None:
        async with _reachable():
            value: Any = await self._redis.hget(self._key(consultation_id), field)
        return _text(value) if value is not None else None

    async def cas(self, consultation_id: str, field: str, expected: str | None, new: str | None) -> CasResult:
        async with _reachable():
            result = await self._cas(
                keys=[self._key(consultation_id)],
                args=[field, expected or "", new or "", self._room_ttl_s],
            )
        return _cas_result(result)

    async def restore(self, consultation_id: str, field: str, body: str, floor: int) -> CasResult:
        async with _reachable():
            result = await self._restore(
                keys=[self._key(consultation_id)], args=[field, body, floor, self._room_ttl_s]
            )
        return _cas_result(result)

    async def epoch(self, candidate: str) -> str:
        key = f"{self._prefix}:{EPOCH_KEY}"
        async with _reachable():
            await self._redis.set(key, candidate, nx=True)
            value: Any = await self._redis.get(key)
        # Gone again between the two calls (another restart): the next check sees it.
        return _text(value) if value is not None else ""

    async def touch(self, consultation_ids: Iterable[str]) -> None:
        ids = list(consultation_ids)
        if not ids:
            return
        async with _reachable(), self._redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.expire(self._key(cid), self._room_ttl_s)
            await pipe.execute()

    async def node_heartbeat(self, node: str) -> None:
        async with _reachable():
            await self._redis.set(f"{self._prefix}:node:{node}", b"1", ex=self._node_ttl_s)

    async def nodes_alive(self, nodes: Iterable[str]) -> set[str]:
        wanted = sorted(set(nodes))
        if not wanted:
            return set()
        async with _reachable():
            values = await self._redis.mget([f"{self._prefix}:node:{n}" for n in wanted])
        return {n for n, v in zip(wanted, values, strict=True) if v is not None}

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def _reachable() -> AsyncIterator[None]:
    """Redis errors (down, restarting, timing out) become :class:`PresenceUnavailable`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise PresenceUnavailable(type(exc).__name__) from exc


def _cas_result(result: Any) -> CasResult:
    rev, current = int(result[0]), result[1]
    if rev:
        return CasResult(ok=True, rev=rev, current=None)
    text = current.decode() if isinstance(current, bytes) else str(current)
    return CasResult(ok=False, rev=0, current=text or None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
