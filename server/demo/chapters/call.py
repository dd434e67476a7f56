"""The call: identity and consent, host and room join through the signalling server with
aiortc, the waiting room and admission, going live, media both ways, the end."""

from __future__ import annotations

import asyncio

from clinic_client.session import host_join_token, room_join_token
from server.demo import cast
from server.demo.api import bearer
from server.demo.context import HOST_TAG, ROOM_TAG, Context
from server.demo.steps import Shown, Unexpected

# RTT needs an RTCP receiver report each way; they come every second or so.
RTT_GRACE_S = 10.0


async def identity_and_consent(ctx: Context) -> Shown:
    """The GP checks the patient's identity and records verbal consent."""
    api, clinician = ctx.require_api(), bearer(ctx.scene.clinician_token)
    cid = ctx.scene.consultation_id
    checked = await api.json("POST", f"/api/v1/consultations/{cid}/identity-check", headers=clinician)
    if checked.get("prison_number") != cast.PATIENT.prison_number:
        raise Unexpected("the identity check showed another patient")
    consent = await api.json(
        "POST", f"/api/v1/consultations/{cid}/consent", json={"consent": "verbal"}, headers=clinician
    )
    if not consent.get("identity_confirmed_at") or not consent.get("consent_recorded_at"):
        raise Unexpected("identity check or consent was not recorded")
    return Shown(
        f"identity checked ({checked['prison_number']}, name, date of birth); verbal consent recorded",
        {"identity_confirmed": True, "consent_recorded": True},
    )


async def host_joins(ctx: Context) -> Shown:
    """The GP joins from the laptop (join token with posture, signalling socket, aiortc)."""
    agent = ctx.scene.laptop_agent
    if agent is None:
        raise RuntimeError("the laptop has not attested")
    server = ctx.require_server()
    ticket = await host_join_token(
        server.base_url, ctx.scene.clinician_token, ctx.scene.consultation_id, posture=agent
    )
    ctx.scene.host = host = await ctx.join_call(ticket.token, HOST_TAG, agent)
    state = host.session.state
    if state.status != "admitted" or state.role != "host":
        raise Unexpected(f"the host joined as {state.role!r} with status {state.status!r}")
    consultation = await ctx.consultation()
    if consultation["state"] != "open":
        raise Unexpected(f"the consultation is {consultation['state']!r} with the host present, not open")
    return Shown(
        f"signed in, join token with posture, socket open as {_short(host.id)}; consultation open",
        {"participant": host.id, "consultation_state": "open"},
    )


async def room_joins(ctx: Context) -> Shown:
    """The room endpoint attests, joins, and waits to be admitted."""
    host = ctx.scene.host
    if host is None:
        raise RuntimeError("the host is not in the call")
    ctx.scene.room_agent = agent = ctx.agent(cast.ROOM)
    ticket = await room_join_token(ctx.require_server().base_url, agent)
    ctx.scene.room = room = await ctx.join_call(ticket.token, ROOM_TAG, agent)
    if room.session.state.status != "waiting":
        raise Unexpected(f"the room endpoint is {room.session.state.status!r}, not waiting")
    await ctx.wait(
        host,
        "the host seeing the room wait",
        lambda s: any(p.id == room.id and p.status == "waiting" for p in s.others),
    )
    return Shown(
        f"attested (simulated compliant), joined as {room.id}; waiting until the host admits it",
        {"participant": room.id, "status": "waiting"},
    )


async def admit_room(ctx: Context) -> Shown:
    """The host admits the waiting room endpoint."""
    host, room = ctx.parties()
    await host.session.admit(room.id)
    await ctx.wait(room, "admission", lambda s: s.status == "admitted")
    return Shown(f"{room.id} admitted", {"status": "admitted"})


async def go_live(ctx: Context) -> Shown:
    """The host starts the consultation; both sides hear it is live."""
    host, room = ctx.parties()
    await host.session.start_consultation()
    for party in (host, room):
        await ctx.wait(party, "going live", lambda s: s.consultation_state == "live")
    consultation = await ctx.consultation()
    if consultation["state"] != "live":
        raise Unexpected(f"the server says the consultation is {consultation['state']!r}")
    return Shown("host started it; both sides told it is live", {"consultation_state": "live"})


async def media_flows(ctx: Context) -> Shown:
    """Video and audio flow both ways: frames counted at each end, RTT from RTCP reports."""
    host, room = ctx.parties()
    ctx.observer.progress("connecting media (aiortc, ICE over loopback)")
    for party in (host, room):
        await ctx.wait(party, "media connecting", lambda s: s.media_connected)
    loop = asyncio.get_running_loop()
    until = loop.time() + ctx.options.media_seconds
    give_up = until + RTT_GRACE_S
    while True:
        at_host = (await host.session.stats()).get(room.id)
        at_room = (await room.session.stats()).get(host.id)
        frames_in_host = at_host.video_frames_received if at_host else 0
        frames_in_room = at_room.video_frames_received if at_room else 0
        rtts = [s.rtt_ms for s in (at_host, at_room) if s is not None and s.rtt_ms is not None]
        ctx.observer.progress(
            f"media flowing: laptop ← room {frames_in_host} frames, room ← laptop {frames_in_room} frames"
        )
        now = loop.time()
        if now >= give_up or (now >= until and len(rtts) == 2):
            break
        await asyncio.sleep(0.5)
    if frames_in_host <= 0 or frames_in_room <= 0:
        raise Unexpected(
            f"no video one way: laptop received {frames_in_host} frames, room {frames_in_room}",
            frames_laptop_received=frames_in_host,
            frames_room_received=frames_in_room,
        )
    rtt = f"RTT {rtts[0]:.1f} / {rtts[1]:.1f} ms" if len(rtts) == 2 else "RTT not reported yet"
    return Shown(
        f"video frames received: laptop ← room {frames_in_host}, room ← laptop {frames_in_room}; {rtt}",
        {
            "frames_laptop_received": frames_in_host,
            "frames_room_received": frames_in_room,
            "audio_frames_laptop_received": at_host.audio_frames_received if at_host else 0,
            "audio_frames_room_received": at_room.audio_frames_received if at_room else 0,
            "rtt_ms_laptop": _round(at_host.rtt_ms if at_host else None),
            "rtt_ms_room": _round(at_room.rtt_ms if at_room else None),
            "candidate_type": at_host.local_candidate_type if at_host else None,
        },
    )


async def end_consultation(ctx: Context) -> Shown:
    """The host ends the consultation; both sides hear it; the server says ended."""
    host, room = ctx.parties()
    await host.session.end("consultation complete")
    for party in (host, room):
        await ctx.wait(party, "the end", lambda s: s.status == "ended")
    consultation = await ctx.consultation()
    if consultation["state"] != "ended":
        raise Unexpected(f"the server says the consultation is {consultation['state']!r}")
    for party in (host, room):
        await party.session.close()
        party.media.stop()
    return Shown("host ended it; both sides told; consultation ended", {"consultation_state": "ended"})


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _short(participant_id: str) -> str:
    # host:<32 hex> is long for one line; the JSON facts keep it whole.
    return participant_id if len(participant_id) <= 18 else participant_id[:13] + "…"
