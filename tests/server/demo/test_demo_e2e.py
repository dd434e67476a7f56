"""End to end: ``telemed demo --json`` runs the whole story on a fresh data directory, and
every step does what it should — the same story a person sees with ``telemed demo``.

The command runs as a child process, as a user would run it: its own server on a loopback
port, real HTTP and WebSocket clients, aiortc media, ``telemed audit export``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.console_agent import LAUNCH_RE

pytestmark = pytest.mark.slow

STORY = [
    "server",
    "accounts",
    "patient",
    "devices",
    "schedule",
    "posture",
    "identity",
    "host_join",
    "room_join",
    "admit",
    "live",
    "media",
    "document",
    "note",
    "end",
    "grant_after_end",
    "posture_refused",
    "audit",
]


def telemed(*args: str, cwd: Path, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run ``telemed …`` in a child process with this interpreter."""
    env = {**os.environ, "TMPDIR": str(cwd), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", "from server.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One ``telemed demo --json --data-dir …`` for the tests of this module."""
    workdir = tmp_path_factory.mktemp("demo")
    data_dir = workdir / "data"
    return telemed("demo", "--json", "--data-dir", str(data_dir), cwd=workdir), data_dir


@pytest.fixture(scope="module")
def timeline(run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    completed, _ = run
    assert completed.stdout.strip(), f"no JSON on stdout; stderr:\n{completed.stderr[-4000:]}"
    document: dict[str, Any] = json.loads(completed.stdout)
    return document


def server_problems(data_dir: Path) -> str:
    """The warnings and errors in the demo's server log, to tell why a step failed."""
    try:
        lines = (data_dir / "server.log").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "no server log"
    problems = [line for line in lines if '"level": "WARNING"' in line or '"level": "ERROR"' in line]
    return "\n".join(problems[-30:]) or "no warnings or errors in the server log"


def step(timeline: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in timeline["steps"] if s["key"] == key)
    return found


def test_every_step_of_the_story_does_what_it_should_and_the_command_exits_0(
    run: tuple[subprocess.CompletedProcess[str], Path], timeline: dict[str, Any]
) -> None:
    completed, data_dir = run
    failed = [f"{s['key']}: {s['summary']}" for s in timeline["steps"] if s["outcome"] != "passed"]
    assert failed == [], server_problems(data_dir)
    assert [s["key"] for s in timeline["steps"]] == STORY
    assert timeline["ok"] is True
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert timeline["server_url"].startswith("http://127.0.0.1:")


def test_media_flows_both_ways_with_round_trip_times(timeline: dict[str, Any]) -> None:
    facts = step(timeline, "media")["facts"]
    assert facts["frames_laptop_received"] > 0
    assert facts["frames_room_received"] > 0
    assert facts["audio_frames_laptop_received"] > 0 and facts["audio_frames_room_received"] > 0


def test_the_document_read_under_the_grant_is_the_one_imported(timeline: dict[str, Any]) -> None:
    imported = step(timeline, "patient")["facts"]
    read = step(timeline, "document")["facts"]
    assert read["sha256"] == imported["document_sha256"]
    assert read["bytes"] == imported["document_bytes"] > 0
    assert read["scope"] == "documents:read notes:write"


def test_the_grant_is_refused_once_the_consultation_has_ended(timeline: dict[str, Any]) -> None:
    assert step(timeline, "end")["facts"]["consultation_state"] == "ended"
    refused = step(timeline, "grant_after_end")
    assert refused["facts"] == {"refused": True, "status": 401, "code": "grant_revoked"}
    assert "401 grant_revoked" in refused["summary"]


def test_a_laptop_with_its_sim_pin_lock_off_is_refused_with_the_remedy(timeline: dict[str, Any]) -> None:
    facts = step(timeline, "posture_refused")["facts"]
    assert facts["refused"] is True
    assert facts["code"] == "policy_failed"
    assert facts["failed_rules"] == ["sim-pin-lock"]
    assert "SIM PIN lock" in facts["remediation"]
    assert step(timeline, "posture")["facts"]["compliant"] is True


def test_the_exported_audit_trail_verifies(timeline: dict[str, Any], run: tuple[Any, Path]) -> None:
    facts = step(timeline, "audit")["facts"]
    assert facts["ok"] is True and facts["server_ok"] is True
    assert facts["checkpoints"] >= 1
    _, data_dir = run
    exported = (data_dir / "demo" / "audit-export.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in exported if json.loads(line)["type"] == "entry"]
    assert facts["entries"] == len(entries) > 0
    decisions = {(entry["action"], entry["outcome"]) for entry in entries}
    # The story's decisions are all on the trail, the refusals too.
    assert {
        ("grant.issue", "allowed"),
        ("document.read", "allowed"),
        ("note.create", "allowed"),
        ("consultation.ended", "success"),
        ("grant.use", "denied"),
        ("device.check", "failure"),
    } <= decisions, sorted(decisions)
    refused_use = next(e for e in entries if (e["action"], e["outcome"]) == ("grant.use", "denied"))
    assert refused_use["detail"]["reason"] == "grant_revoked"


def test_no_password_or_token_is_printed(run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    completed, data_dir = run
    output = completed.stdout + completed.stderr
    passwords = [p.read_text().strip() for p in (data_dir / "demo").glob("*.password")]
    assert len(passwords) == 2
    for password in passwords:
        assert password not in output
    assert "eyJ" not in output  # no JWT (grant, posture, join or access token)


def test_keep_running_leaves_a_consultation_to_join_with_the_printed_command(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "200"}
    demo = subprocess.Popen(
        [sys.executable, "-c", "from server.cli import main; main()", "demo", "--keep-running", "--json"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        for line in demo.stdout:  # the JSON document ends with a lone closing brace
            lines.append(line)
            if line == "}\n":
                break
        document = json.loads("".join(lines))
        assert document["ok"] is True, [s for s in document["steps"] if not s["ok"]]
        keep = document["keep_running"]
        assert keep["data_dir"].startswith(str(tmp_path))
        # The exact command, as printed: the password comes from its file, never the output.
        joined = subprocess.run(
            ["bash", "-c", keep["join_command"] + " --duration 5 --no-live"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert joined.returncode == 0, joined.stdout + joined.stderr
        _the_printed_console_command_opens_a_console_that_signs_in(keep, tmp_path, env)
    finally:
        demo.send_signal(signal.SIGINT)
        _, errors = demo.communicate(timeout=60)
    assert demo.returncode == 0, errors[-4000:]
    assert not Path(keep["data_dir"]).exists()  # Ctrl-C cleaned up the temporary data


def _the_printed_console_command_opens_a_console_that_signs_in(
    keep: dict[str, str], workdir: Path, env: dict[str, str]
) -> None:
    """Run the printed console command (with ``--no-browser``), open its launch URL as the browser
    would, sign in with the password from the demo's file: the device check passes on the demo's
    laptop and today's schedule shows the follow-up the room endpoint waits in."""
    agent = subprocess.Popen(
        ["bash", "-c", keep["console_command"] + " --no-browser --port 0"],
        cwd=workdir,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert agent.stdout is not None
        launch = ""
        for line in agent.stdout:
            found = LAUNCH_RE.search(line)
            if found:
                launch = found.group(1)
                break
        assert launch, "the console printed no launch URL"
        origin = launch.split("/launch/")[0]
        with httpx.Client(base_url=origin, headers={"Origin": origin}, timeout=30.0) as page:
            assert page.get(launch).status_code == 303
            password = Path(keep["password_file"]).read_text().strip()
            signed_in = page.post("/api/sign-in", json={"username": keep["username"], "password": password})
            assert signed_in.status_code == 200, signed_in.text
            assert signed_in.json()["signed_in"] is True
            check = page.post("/api/device-check")
            assert check.status_code == 200 and check.json()["compliant"] is True, check.text
            schedule = page.get("/api/schedule")
            assert schedule.status_code == 200, schedule.text
            assert any(row["id"] == keep["consultation_id"] for row in schedule.json())
    finally:
        agent.terminate()
        agent.communicate(timeout=30)  # reaps it and closes the pipe
