"""``telemed demo --keep-running``: after the story, leave the server up to try things by hand.

The story's consultation has ended (that is part of the story), so a follow-up is booked
for the same patient, clinician and room, now → +30 min, and the demo's room endpoint
waits in it — as ``telemed-client room`` would — sending synthetic video. From another
terminal the clinician joins it with ``telemed-client join`` (the exact command is
printed; the password is read from a file, never printed) and admits the room — or opens the
clinician's console in the browser with ``telemed-client console`` (also printed) and signs
in there with the password from the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clinic_client.session import SessionError, room_join_token
from server.demo import cast
from server.demo.api import bearer
from server.demo.context import CONSULTATION_LENGTH, ROOM_TAG, Context

log = logging.getLogger("telemed.demo")

RETRY_S = 3.0
_FOREVER_S = 24 * 3600.0


@dataclass(frozen=True)
class JoinInstructions:
    """What a person needs to join the follow-up consultation from another terminal."""

    server_url: str
    data_dir: str
    consultation_id: str
    username: str
    password_file: str
    admin_password_file: str
    device_id: str
    key_file: str

    @property
    def command(self) -> str:
        """The exact shell command (the password comes from its file)."""
        argv = [
            _client_program(),
            "join",
            "--server",
            self.server_url,
            "--username",
            self.username,
            "--consultation",
            self.consultation_id,
            "--device-id",
            self.device_id,
            "--key-file",
            self.key_file,
            "--posture-source",
            "simulated:compliant",
            "--media",
            "synthetic",
            "--admit",
            "room",
        ]
        password = f'TELEMED_CLIENT_PASSWORD="$(cat {shlex.quote(self.password_file)})"'
        return f"{password} {shlex.join(argv)}"

    @property
    def console_command(self) -> str:
        """The command that opens the clinician's console in the browser on the demo's laptop."""
        argv = [
            _client_program(),
            "console",
            "--server",
            self.server_url,
            "--device-id",
            self.device_id,
            "--key-file",
            self.key_file,
            "--simulate",
            "compliant",
        ]
        return shlex.join(argv)

    def to_json(self) -> dict[str, str]:
        """For ``--json``."""
        return {
            "server_url": self.server_url,
            "data_dir": self.data_dir,
            "consultation_id": self.consultation_id,
            "username": self.username,
            "password_file": self.password_file,
            "admin_password_file": self.admin_password_file,
            "device_id": self.device_id,
            "key_file": self.key_file,
            "join_command": self.command,
            "console_command": self.console_command,
        }


def _client_program() -> str:
    # The telemed-client installed next to this interpreter, else whatever PATH finds.
    beside = Path(sys.executable).parent / "telemed-client"
    if beside.exists():
        return str(beside)
    return shutil.which("telemed-client") or "telemed-client"


async def book_follow_up(ctx: Context) -> JoinInstructions:
    """Book the follow-up consultation through the API and say how to join it."""
    api, credentials = ctx.api, ctx.scene.credentials
    if api is None or credentials is None or ctx.server is None:
        raise RuntimeError("the story did not get far enough to keep running")
    access = await api.login(cast.CLINICIAN.username, credentials.password(cast.CLINICIAN))
    start = datetime.now(UTC)
    booked = await api.json(
        "POST",
        "/api/v1/consultations",
        json={
            "patient_id": ctx.scene.patient_id,
            "room_device_id": cast.ROOM.id,
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + CONSULTATION_LENGTH).isoformat(),
        },
        headers=bearer(access),
    )
    return JoinInstructions(
        server_url=ctx.server.base_url,
        data_dir=str(ctx.options.data_dir),
        consultation_id=str(booked["id"]),
        username=cast.CLINICIAN.username,
        password_file=str(ctx.demo_dir / f"{cast.CLINICIAN.username}.password"),
        admin_password_file=str(ctx.demo_dir / f"{cast.ADMIN.username}.password"),
        device_id=cast.LAPTOP.id,
        key_file=str(ctx.device(cast.LAPTOP).key_file),
    )


async def run_room_endpoint(ctx: Context, stop: asyncio.Event) -> None:
    """Join whatever is booked for the demo's room now, again after each call, until ``stop``."""
    server_url = ctx.require_server().base_url
    async with ctx.agent(cast.ROOM) as agent:
        while not stop.is_set():
            try:
                ticket = await room_join_token(server_url, agent)
                party = await ctx.join_call(ticket.token, ROOM_TAG, agent)
            except SessionError as exc:
                if exc.code != "not_found":
                    log.warning("room endpoint cannot join: %s", exc.code)
                await _pause(stop)
                continue
            except Exception:
                log.exception("room endpoint failed to join")
                await _pause(stop)
                continue
            try:
                await party.session.wait_until(
                    lambda s: stop.is_set() or s.status in ("ended", "denied", "closed"), _FOREVER_S
                )
            finally:
                with contextlib.suppress(Exception):
                    await party.session.leave()
                party.media.stop()
            await _pause(stop)


async def _pause(stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), RETRY_S)
