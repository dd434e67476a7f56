"""The REST side and the signalling hub agree: the host's socket opens the call, REST end closes it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from server.db import utcnow
from tests.server.consultations.audit_trail import AuditTrail
from tests.server.consultations.conftest import Clinic

SIGNALLING = "/ws/v1/signalling"


def _receive_until(ws: Any, kind: str, limit: int = 20) -> dict[str, Any]:
    for _ in range(limit):
        message: dict[str, Any] = ws.receive_json()
        if message.get("type") == kind:
            return message
    raise AssertionError(f"no {kind!r} message")


def test_rest_end_closes_the_hosts_socket_and_the_host_socket_opened_the_call(
    clinic: Clinic, audit: AuditTrail
) -> None:
    start = utcnow() + timedelta(minutes=5)
    cid = clinic.book(
        scheduled_start=start.isoformat(), scheduled_end=(start + timedelta(hours=1)).isoformat()
    )["id"]
    token = clinic.post(f"{cid}/join-token").json()["token"]
    with clinic.client.websocket_connect(SIGNALLING) as ws:
        ws.send_json({"v": 1, "type": "hello", "join_token": token})
        _receive_until(ws, "welcome")
        assert clinic.get(f"/{cid}").json()["state"] == "open"
        ended = clinic.post(f"{cid}/end", json={"reason": "all done"})
        assert ended.status_code == 200 and ended.json()["state"] == "ended"
        told = _receive_until(ws, "consultation.ended")
        assert told["reason"] == "all done"
    assert ("consultation.opened", "success") in audit.actions(consultation_id=cid)
    assert audit.actions(consultation_id=cid)[-1] == ("consultation.ended", "success")
