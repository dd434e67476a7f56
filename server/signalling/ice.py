"""TURN credentials for each socket: minted for the ``welcome``, renewed before they expire.

coturn checks a ``use-auth-secret`` credential's expiry whenever an allocation is made, so
credentials from the welcome stop working for any *new* peer connection (a recovery, a
participant admitted later) once ``TELEMED_TURN_TTL`` has passed, however long the call
has run. The hub therefore sends every admitted participant an ``ice_servers`` message
with fresh credentials at the grant's ``refresh_at`` (minutes before expiry), again and
again for as long as its socket stays. Credentials stay short-lived: a leaked one still
dies by itself.

Only admitted participants get renewals. One whose renewal falls due while it waits or is
suspended (its device failed posture) gets nothing until it is admitted again; then fresh
credentials go out just before ``admitted``, so the peer connections it opens on
admission use them. A resumed or replacing socket gets fresh ones in its ``welcome``.
Logs name the participant and the expiry, never a username or credential.
"""

from __future__ import annotations

import logging
import time

from server.signalling.connection import Connection
from server.signalling.context import HubContext
from server.signalling.ports import IceGrant, JoinGrant
from server.signalling.protocol import IceServers
from server.signalling.room import Room

log = logging.getLogger("telemed.signalling")

# Never renew more often than this, whatever the TTL (a guard against a busy loop).
MIN_RENEWAL_INTERVAL_S = 1.0


class IceRenewal:
    """Mints each socket's TURN credentials and renews them while its participant is admitted."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx

    def issue(self, conn: Connection, grant: JoinGrant) -> IceGrant:
        """Fresh credentials for a ``welcome``; remembers when they are due for renewal."""
        ice = self.ctx.ice.for_participant(grant.participant_id, grant.role)
        conn.ice_refresh_at = ice.refresh_at
        conn.ice_stale = False
        return ice

    def watch(self, conn: Connection, room: Room) -> None:
        """Arm the renewal of this socket's current credentials."""
        conn.stop_ice_timer()
        due = conn.ice_refresh_at
        if due is None or conn.detached:
            return
        delay = max(MIN_RENEWAL_INTERVAL_S, due - time.time())
        conn.ice_timer = self.ctx.spawn_later(delay, lambda: self._due(conn, room))

    async def _due(self, conn: Connection, room: Room) -> None:
        conn.ice_timer = None
        if conn.detached or conn.closing or conn.grant is None:
            return
        record = room.records.get(conn.participant_id)
        if record is None or record.conn != conn.id:
            return
        if record.status != "admitted":
            conn.ice_stale = True  # renewed when admitted again (see before_admitted)
            return
        self.renew(conn, room)

    def before_admitted(self, conn: Connection, room: Room) -> None:
        """The participant is about to be told it is admitted: renew credentials that fell due."""
        if conn.ice_stale and not conn.detached and not conn.closing:
            self.renew(conn, room)

    def renew(self, conn: Connection, room: Room) -> None:
        """Send fresh credentials now (``ice_servers``) and arm the next renewal."""
        grant = conn.grant
        if grant is None:
            return
        ice = self.ctx.ice.for_participant(grant.participant_id, grant.role)
        conn.ice_stale = False
        conn.ice_refresh_at = ice.refresh_at
        if not ice.servers or ice.expires_at is None:
            return  # nothing to renew with (the provider logged why); the welcome's stand
        conn.send(
            IceServers(ice_servers=ice.servers, ice_policy=ice.policy, expires_at=int(ice.expires_at)).wire()
        )
        log.debug(
            "TURN credentials renewed",
            extra={
                "consultation_id": room.id,
                "participant": grant.participant_id,
                "expires_at": int(ice.expires_at),
            },
        )
        self.watch(conn, room)
