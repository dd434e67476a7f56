"""``telemed demo``: the whole product on this machine, in one command.

Exit codes: 0 every step did what it should; 1 a step did not (its line says what
happened instead); 2 the demo cannot run as asked (a data directory that holds data);
130 interrupted (Ctrl-C during the story).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from server.demo.render import TimelineRenderer, render_json

if TYPE_CHECKING:
    from server.demo.context import Context

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

console = Console()
err_console = Console(stderr=True)


def demo(
    keep_running: bool = typer.Option(
        False,
        "--keep-running",
        help="After the story, leave the server up with its data and a room endpoint waiting in a "
        "follow-up consultation; print how to join it. Ctrl-C stops and cleans up.",
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Keep the demo's data here (a new or empty directory) instead of a temporary one.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the timeline as JSON, for machines."),
) -> None:
    """Run the whole product on this machine: one consultation from booking to a verified audit trail."""
    chosen = data_dir.expanduser().resolve() if data_dir is not None else None
    if chosen is not None and chosen.exists() and (not chosen.is_dir() or any(chosen.iterdir())):
        err_console.print(f"[red]{chosen} already holds data;[/red] give a new or empty directory.")
        raise typer.Exit(EXIT_USAGE)
    renderer = None if json_output else TimelineRenderer(console)
    if renderer is not None:
        console.print(
            "[bold]telemed demo[/bold] · a prison video consultation from booking to audit, on this machine\n"
        )
    # Imported here: the story pulls in aiortc, which no other telemed command needs.
    from server.demo.story import Demo, DemoOptions

    where = chosen or Path(tempfile.mkdtemp(prefix="telemed-demo-"))
    options = DemoOptions(data_dir=where, remove_data=chosen is None)
    log_file = _log_to_file(where)

    async def main() -> int:
        demo = Demo(options, renderer)
        try:
            result = await demo.run()
            document: dict[str, Any] = result.to_json()
            if not result.ok or not keep_running:
                _report(document, json_output, log_file, removed=options.remove_data and result.ok)
                return EXIT_OK if result.ok else EXIT_FAILED
            await _hold(demo.ctx, document, json_output)
            return EXIT_OK
        finally:
            if renderer is not None:
                renderer.close()
            await demo.close()

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        err_console.print("Interrupted: the server is stopped and the call left.")
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


async def _hold(ctx: Context, document: dict[str, Any], json_output: bool) -> None:
    from server.demo.hold import book_follow_up, run_room_endpoint

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    join = await book_follow_up(ctx)
    room = asyncio.create_task(run_room_endpoint(ctx, stop), name="demo-room-endpoint")
    if json_output:
        typer.echo(render_json({**document, "keep_running": join.to_json()}))
    else:
        _summary(document)
        kept = "kept" if not ctx.options.remove_data else "removed when you stop"
        console.print(
            f"\n[bold]The server keeps running[/bold] at {join.server_url}\n"
            f"  data:       {join.data_dir} ({kept}; server log in server.log)\n"
            f"  admin:      username admin, password in {join.admin_password_file}\n"
            f"  follow-up:  consultation {join.consultation_id} is booked now → +30 min; "
            "the room endpoint is waiting in it\n\n"
            "Open the clinician's console in the browser (sign in as "
            f"{join.username}, password in {join.password_file}):\n"
        )
        console.print(join.console_command, soft_wrap=True, highlight=False, markup=False)
        console.print("\nor join from a terminal (the password is read from its file):\n")
        console.print(join.command, soft_wrap=True, highlight=False, markup=False)
        console.print("\nCtrl-C stops the server and cleans up.")
    await stop.wait()
    await room
    if not json_output:
        console.print("Stopping…")


def _report(document: dict[str, Any], json_output: bool, log_file: Path, *, removed: bool) -> None:
    if json_output:
        typer.echo(render_json(document))
        return
    _summary(document)
    if not document["ok"]:
        console.print(f"Kept {document['data_dir']} for a look (server log: {log_file}).")
    elif not removed:
        console.print(f"Data kept in {document['data_dir']}.")


def _summary(document: dict[str, Any]) -> None:
    steps = document["steps"]
    failed = sum(1 for s in steps if s["outcome"] == "failed")
    skipped = sum(1 for s in steps if s["outcome"] == "skipped")
    seconds = document["seconds"]
    if document["ok"]:
        console.print(
            f"\n[bold green]✓ All {len(steps)} steps did what they should[/bold green] ({seconds:.1f} s)."
        )
    else:
        console.print(
            f"\n[bold red]✗ {failed} step{'s' if failed != 1 else ''} failed[/bold red]"
            f"{f', {skipped} not run' if skipped else ''} ({seconds:.1f} s)."
        )


def _log_to_file(data_dir: Path) -> Path:
    """Send the server's (and the clients') logs to a file in the data directory, not the terminal."""
    from server.ops.logging import JsonFormatter

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "server.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return path
