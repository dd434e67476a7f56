"""The audit trail: exported with ``telemed audit export`` (as an operator would), verified
offline against the published audit key, and by the server itself."""

from __future__ import annotations

import asyncio
from typing import Any

from records.audit.export import verify_export_file
from records.audit.signing import load_public_keys
from server.demo.api import bearer
from server.demo.context import Context
from server.demo.embedded import cli_environment, telemed_command
from server.demo.steps import Shown, Unexpected


async def export_and_verify(ctx: Context) -> Shown:
    """Export the audit log with `telemed audit export` and verify it offline and on the server."""
    server, api = ctx.require_server(), ctx.require_api()
    export = ctx.demo_dir / "audit-export.jsonl"
    ctx.observer.progress("telemed audit export")
    process = await asyncio.create_subprocess_exec(
        *telemed_command("audit", "export", "--output", str(export)),
        env=cli_environment(server.settings),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise Unexpected(f"telemed audit export exited {process.returncode}: {last[0]}")
    key = await api.json("GET", "/api/v1/audit/public-key")
    with export.open("r", encoding="utf-8") as stream:
        report = verify_export_file(stream, load_public_keys(str(key["public_key_pem"]).encode()))
    online = await api.json("GET", "/api/v1/audit/verify", headers=bearer(ctx.scene.admin_token))
    facts: dict[str, Any] = {
        "ok": report.ok,
        "entries": report.entries_checked,
        "checkpoints": report.checkpoints_checked,
        "anchored": report.anchored_size,
        "server_ok": bool(online.get("ok")),
        "server_entries": int(online.get("entries_checked", 0)),
    }
    if not report.ok:
        raise Unexpected(f"the export does not verify: {report.problem}: {report.message}", **facts)
    if not online.get("ok"):
        raise Unexpected(f"the server's own verification failed: {online.get('message')}", **facts)
    if report.entries_checked == 0 or report.checkpoints_checked == 0:
        raise Unexpected("the export holds no entries or no signed checkpoint", **facts)
    return Shown(
        f"{report.entries_checked} entries, {report.checkpoints_checked} signed checkpoints, "
        f"hash chain and signatures verify offline: ok",
        facts,
    )
