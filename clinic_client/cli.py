"""``telemed-client``: take part in a consultation from a terminal, or run a room endpoint unattended.

::

    # a clinician hosting (admits the room endpoint when it waits; ends when leaving)
    telemed-client join --server https://telemed.example.org --username dr.jones \\
        --consultation c0ffee… --admit room --end-on-exit

    # a specialist with the invite link (only the part after "#" is a secret)
    telemed-client join --server https://telemed.example.org --invite 'https://…/join#inv_…' \\
        --record consultation.mkv

    # a healthcare-room endpoint: attests, joins whatever is booked for it now, forever
    telemed-client room --server https://telemed.example.org --device-id room-hmp-01

    # the same with the patient's full-screen page in Chromium (docs/room.md)
    telemed-client room --kiosk --server https://telemed.example.org --device-id room-hmp-01

``join`` shows the call live: waiting / admitted / live, the participants, and per
participant RTT, jitter, loss and bitrates. ``--record FILE`` writes what the others send
(the first one to FILE, any further one to FILE-<role>.<suffix>).

Exit codes: 0 the call ended or we left; 1 refused (bad token, denied, consultation over);
2 usage error; 4 the server could not be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from clinic_client.call import CallStats, LocalMedia, open_devices, open_media, synthetic_media
from clinic_client.console.cli import console as console_command
from clinic_client.posture import CollectorSource, PostureAgent, PostureError, SimulatedSource
from clinic_client.room.cli import serve_room_screen
from clinic_client.session import (
    ConsultationSession,
    SessionError,
    SessionState,
    host_join_token,
    login,
    redeem_invite,
    room_join_token,
)
from clinic_client.signalling import JoinRefused, NotConnected, SignallingError
from device_policy.errors import DevicePolicyError
from device_policy.keys import load_private_key

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 4

app = typer.Typer(
    help="telemed-client: join a video consultation, or run a room endpoint.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

_STATUS_STYLE = {
    "connecting": "yellow",
    "waiting": "yellow",
    "admitted": "green",
    "suspended": "red",
    "reconnecting": "yellow",
    "ended": "blue",
    "denied": "red",
    "closed": "dim",
}


# --- media and posture -----------------------------------------------------------------------


def _media(spec: str, tag: int) -> LocalMedia:
    """``synthetic`` (marked test video + tone), ``devices`` (camera and microphone), or a file."""
    if spec == "synthetic":
        return synthetic_media(source_tag=tag)
    if spec == "devices":
        return open_devices()
    path = Path(spec)
    if not path.exists():
        err_console.print(f"[red]No media file {spec!r}[/red] (use synthetic, devices or a file)")
        raise typer.Exit(EXIT_USAGE)
    return open_media(path, loop=True)


def _agent(server: str, device_id: str, key_file: Path, source: str) -> PostureAgent:
    try:
        key = load_private_key(key_file.expanduser())
    except (OSError, DevicePolicyError) as exc:
        err_console.print(f"[red]Cannot use the device key {key_file}:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    facts = (
        CollectorSource() if source == "collectors" else SimulatedSource(source.removeprefix("simulated:"))
    )
    return PostureAgent(server_url=server, device_id=device_id, private_key=key, source=facts)


# --- the live view ---------------------------------------------------------------------------


def _figure(value: float | None, unit: str, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f} {unit}"


def render(state: SessionState, stats: dict[str, CallStats], recording: list[str]) -> Group:
    """The live call view: status line, then one row per other participant."""
    style = _STATUS_STYLE.get(state.status, "white")
    headline = Text.assemble(
        ("● ", style),
        (state.status, f"bold {style}"),
        f"   consultation {state.consultation_state}",
        f"   me {state.participant_id or '…'}",
    )
    if state.reason:
        headline.append(f"   ({state.reason})", style="dim")
    if state.reconnects:
        headline.append(f"   reconnected ×{state.reconnects}", style="dim")
    table = Table(expand=True)
    for column in ("participant", "role", "status", "media", "RTT", "jitter", "loss", "in", "out", "frames"):
        table.add_column(
            column, justify="right" if column in ("RTT", "jitter", "loss", "in", "out") else "left"
        )
    for other in state.others:
        figures = stats.get(other.id)
        media = state.media.get(other.id, "–")
        table.add_row(
            other.name,
            other.role,
            other.status if other.connected else f"{other.status} (reconnecting)",
            media,
            _figure(figures.rtt_ms if figures else None, "ms"),
            _figure(figures.jitter_ms if figures else None, "ms", 1),
            _figure(figures.packet_loss_pct if figures else None, "%", 1),
            _figure(figures.bitrate_in_kbps if figures else None, "kb/s"),
            _figure(figures.bitrate_out_kbps if figures else None, "kb/s"),
            str(figures.video_frames_received) if figures else "–",
        )
    parts: list[Any] = [headline, table]
    if recording:
        parts.append(Text(f"recording to {', '.join(recording)}", style="dim"))
    return Group(*parts)


# --- running a session -----------------------------------------------------------------------


class Runner:
    """Runs one session with the live view until it ends, we leave, or ``duration`` passes."""

    def __init__(
        self,
        session: ConsultationSession,
        *,
        record: Path | None,
        admit: list[str],
        end_on_exit: bool,
        duration: float | None,
        live: bool,
    ) -> None:
        self.session = session
        self.record = record
        self.admit = admit
        self.end_on_exit = end_on_exit
        self.duration = duration
        self.live = live
        self.recording: dict[str, str] = {}
        self.stats: dict[str, CallStats] = {}

    async def run(self) -> SessionState:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        deadline = loop.time() + self.duration if self.duration else None
        view = Live(console=console, refresh_per_second=4, transient=False) if self.live else None
        try:
            if view is not None:
                view.start()
            while not stop.is_set():
                state = self.session.state
                if state.status in ("ended", "denied", "closed"):
                    break
                if deadline is not None and loop.time() >= deadline:
                    break
                await self._tick(state)
                if view is not None:
                    view.update(render(self.session.state, self.stats, list(self.recording.values())))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            if view is not None:
                view.update(render(self.session.state, self.stats, list(self.recording.values())))
                view.stop()
            await self._leave()
        return self.session.state

    async def _tick(self, state: SessionState) -> None:
        if state.role == "host":
            for other in state.others:
                if (
                    other.status == "waiting"
                    and other.connected
                    and (other.role in self.admit or other.id in self.admit)
                ):
                    with contextlib.suppress(SignallingError):
                        await self.session.admit(other.id)
        if state.status == "admitted":
            self.stats = await self.session.stats()
            if self.record is not None:
                await self._record_new(state)

    async def _record_new(self, state: SessionState) -> None:
        assert self.record is not None  # noqa: S101 - called only with --record
        for other in state.others:
            if other.id in self.recording or state.media.get(other.id) != "connected":
                continue
            path = self.record
            if self.recording:
                path = self.record.with_name(f"{self.record.stem}-{other.role}{self.record.suffix}")
            await self.session.record(other.id, path)
            self.recording[other.id] = str(path)

    async def _leave(self) -> None:
        state = self.session.state
        if self.end_on_exit and state.role == "host" and state.status not in ("ended", "closed", "denied"):
            with contextlib.suppress(SignallingError):
                await self.session.end("ended by host")
        if self.session.state.status not in ("ended", "denied", "closed"):
            await self.session.leave()
        else:
            await self.session.close()


def _run(main: Callable[[], Any]) -> int:
    """Run an async main; map the SDK's errors to exit codes with a readable message."""
    try:
        result: int = asyncio.run(main())
    except JoinRefused as exc:
        err_console.print(f"[red]Refused ({exc.code}):[/red] {exc.message}")
        return EXIT_REFUSED
    except (NotConnected, OSError) as exc:
        err_console.print(f"[red]Cannot reach the server:[/red] {exc}")
        return EXIT_UNREACHABLE
    except SessionError as exc:
        err_console.print(f"[red]{exc.code}:[/red] {exc}")
        return EXIT_UNREACHABLE if exc.code == "unreachable" else EXIT_REFUSED
    except PostureError as exc:
        err_console.print(f"[red]Posture refused ({exc.code}):[/red] {exc}")
        return EXIT_REFUSED
    return result


def _outcome(state: SessionState) -> int:
    if state.status == "denied":
        console.print(f"[red]The host did not admit you[/red]{f': {state.reason}' if state.reason else ''}")
        return EXIT_REFUSED
    if state.status == "ended":
        console.print(f"The consultation has ended{f' ({state.reason})' if state.reason else ''}.")
    return EXIT_OK


# --- commands --------------------------------------------------------------------------------


@app.command()
def join(
    server: str = typer.Option(
        ..., envvar="TELEMED_SERVER", help="The telemed server, e.g. https://telemed.example.org."
    ),
    consultation: str | None = typer.Option(None, help="Host: the consultation to host."),
    username: str | None = typer.Option(None, help="Host: your username."),
    password: str | None = typer.Option(
        None, envvar="TELEMED_CLIENT_PASSWORD", help="Host: your password (prompted when not given)."
    ),
    invite: str | None = typer.Option(None, help="Specialist: the invite link, or the token after its '#'."),
    join_token: str | None = typer.Option(
        None, envvar="TELEMED_JOIN_TOKEN", help="A join token issued already."
    ),
    device_id: str | None = typer.Option(
        None, help="Host on a prison laptop: its device id (posture required)."
    ),
    key_file: Path = typer.Option(
        Path("~/.config/telemed/device-key.pem"), envvar="TELEMED_DEVICE_KEY_FILE", help="The device key."
    ),
    posture_source: str = typer.Option(
        "collectors", help="collectors, or simulated:<profile> (development)."
    ),
    media: str = typer.Option("devices", help="synthetic, devices (camera + microphone) or a media file."),
    record: Path | None = typer.Option(None, help="Record what the others send (.mkv, .mp4, .webm, .wav)."),
    admit: list[str] = typer.Option(
        [], help="Host: admit these when they wait (a role or a participant id)."
    ),
    end_on_exit: bool = typer.Option(False, help="Host: end the consultation when leaving."),
    duration: float | None = typer.Option(None, help="Leave after this many seconds."),
    live: bool = typer.Option(True, help="Show the live view."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the client does."),
) -> None:
    """Join a consultation (host, specialist, or with a join token) and show the call live."""
    _logging(verbose)
    if sum(x is not None for x in (consultation, invite, join_token)) != 1:
        err_console.print("Give exactly one of --consultation (host), --invite (specialist) or --join-token")
        raise typer.Exit(EXIT_USAGE)
    if consultation is not None and username is None:
        err_console.print("A host signs in: give --username")
        raise typer.Exit(EXIT_USAGE)
    if consultation is not None and password is None:
        password = typer.prompt("Password", hide_input=True)
    agent = _agent(server, device_id, key_file, posture_source) if device_id else None

    async def main() -> int:
        token = join_token
        if consultation is not None:
            assert username is not None and password is not None  # noqa: S101 - checked above
            access = await login(server, username, password)
            token = (await host_join_token(server, access, consultation, posture=agent)).token
        elif invite is not None:
            token = (await redeem_invite(server, invite.rsplit("#", 1)[-1])).token
        assert token is not None  # noqa: S101 - exactly one source was given
        local = _media(media, tag=1)
        try:
            session = await ConsultationSession.join(server, token, media=local, posture=agent)
            state = await Runner(
                session, record=record, admit=admit, end_on_exit=end_on_exit, duration=duration, live=live
            ).run()
        finally:
            local.stop()
            if agent is not None:
                await agent.aclose()
        return _outcome(state)

    raise typer.Exit(_run(main))


@app.command()
def room(
    server: str = typer.Option(..., envvar="TELEMED_SERVER", help="The telemed server."),
    device_id: str = typer.Option(..., envvar="TELEMED_DEVICE_ID", help="This room endpoint's device id."),
    key_file: Path = typer.Option(
        Path("~/.config/telemed/device-key.pem"), envvar="TELEMED_DEVICE_KEY_FILE", help="The device key."
    ),
    posture_source: str = typer.Option(
        "collectors", help="collectors, or simulated:<profile> (development)."
    ),
    media: str = typer.Option("devices", help="synthetic, devices (camera + microphone) or a media file."),
    poll: float = typer.Option(30.0, help="Seconds between looks for a booked consultation."),
    once: bool = typer.Option(False, help="Stop after one consultation."),
    live: bool = typer.Option(True, help="Show the live view."),
    kiosk: bool = typer.Option(
        False, help="Serve the patient's full-screen page (docs/room.md); media is the browser's."
    ),
    port: int = typer.Option(0, min=0, max=65535, help="Kiosk: the local port (0: a free one)."),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Kiosk: print the launch URL instead of starting Chromium."
    ),
    browser: str | None = typer.Option(None, help="Kiosk: the browser to start (default: Chromium)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the client does."),
) -> None:
    """Run a room endpoint: join the consultation booked for this device whenever there is one."""
    _logging(verbose)
    agent = _agent(server, device_id, key_file, posture_source)
    if kiosk:
        raise typer.Exit(
            serve_room_screen(
                server=server,
                posture=agent,
                port=port,
                open_browser=not no_browser,
                browser=browser,
                poll_s=poll,
            )
        )

    async def main() -> int:
        try:
            while True:
                try:
                    ticket = await room_join_token(server, agent)
                except SessionError as exc:
                    if exc.code != "not_found":
                        raise
                    console.print(f"[dim]No consultation booked now; looking again in {poll:g} s[/dim]")
                    await asyncio.sleep(poll)
                    continue
                console.print(f"Joining consultation {ticket.consultation_id} as {ticket.name}")
                local = _media(media, tag=2)
                try:
                    session = await ConsultationSession.join(server, ticket.token, media=local, posture=agent)
                    state = await Runner(
                        session, record=None, admit=[], end_on_exit=False, duration=None, live=live
                    ).run()
                finally:
                    local.stop()
                _outcome(state)
                if once:
                    return EXIT_OK
                await asyncio.sleep(poll)
        finally:
            await agent.aclose()

    raise typer.Exit(_run(main))


app.command("console")(console_command)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    """Entry point of the ``telemed-client`` console script."""
    app()


if __name__ == "__main__":
    main()
