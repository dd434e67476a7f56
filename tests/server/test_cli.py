"""The ``telemed`` command as a newcomer uses it: serve, init, sign in with what init printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest
import typer.main
from typer.testing import CliRunner

from clinic_client.cli import app as client_cli
from clinic_client.device_cli import app as device_cli
from server.cli import cli as server_cli
from tests.support.services import free_port

TELEMED = [sys.executable, "-m", "server.cli"]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
    env.update({"TELEMED_DATA_DIR": str(data_dir), "TELEMED_LOG_JSON": "true", "COLUMNS": "200", **extra})
    return env


def run_cli(*args: str, data_dir: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command
        [*TELEMED, *args],
        env=_env(data_dir, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path / "data"
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(  # noqa: S603
        [*TELEMED, "serve", "--port", str(port)],
        env=_env(data_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not become ready:\n{(tmp_path / 'serve.log').read_text()}")
            time.sleep(0.2)
        yield base, data_dir
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_serve_then_init_then_login_with_printed_credentials(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    base, data_dir = server
    assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
    init = run_cli("init", data_dir=data_dir)
    assert init.returncode == 0, init.stderr
    password = re.search(r"shown once:\s*\n\s*(\S+)", init.stdout)
    assert password, init.stdout
    resp = httpx.post(f"{base}/api/v1/auth/login", json={"username": "admin", "password": password.group(1)})
    assert resp.status_code == 200
    assert resp.json()["user"]["role"] == "admin"
    # A second init refuses rather than minting another admin.
    again = run_cli("init", data_dir=data_dir)
    assert again.returncode == 1 and "already exists" in again.stderr
    log = (tmp_path / "serve.log").read_text()
    assert password.group(1) not in log
    assert resp.json()["access_token"] not in log
    # JSON lines; the sign-in's access line carries the request id the response was given.
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    access = [line for line in lines if line.get("route") == "/api/v1/auth/login"]
    assert [(a["status"], a["request_id"]) for a in access] == [(200, resp.headers["x-request-id"])]


def test_user_commands_and_key_rotation(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    add = run_cli(
        "user",
        "add",
        "nurse.jones",
        "--role",
        "clinician",
        "--display-name",
        "Nurse Jones",
        data_dir=data_dir,
    )
    assert add.returncode == 0, add.stderr
    assert "Password (shown once)" in add.stdout
    dup = run_cli(
        "user",
        "add",
        "nurse.jones",
        "--role",
        "clinician",
        "--display-name",
        "X",
        data_dir=data_dir,
    )
    assert dup.returncode == 1 and "already_exists" in dup.stderr
    listed = run_cli("user", "list", data_dir=data_dir)
    assert "nurse.jones" in listed.stdout and "active" in listed.stdout
    disabled = run_cli("user", "disable", "nurse.jones", data_dir=data_dir)
    assert disabled.returncode == 0
    assert "disabled" in run_cli("user", "list", data_dir=data_dir).stdout
    rotated = run_cli("keys", "rotate", data_dir=data_dir)
    assert rotated.returncode == 0 and "New signing key" in rotated.stdout


def test_production_refuses_default_secret(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", data_dir=tmp_path, TELEMED_ENVIRONMENT="production")
    assert result.returncode == 2
    assert "TELEMED_SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["init"],
        ["user", "add"],
        ["user", "list"],
        ["user", "disable"],
        ["keys", "rotate"],
        ["db", "upgrade"],
    ],
)
def test_help_on_each_command(command: list[str], tmp_path: Path) -> None:
    result = run_cli(*command, "--help", data_dir=tmp_path)
    assert result.returncode == 0
    assert re.search(rf"Usage: \S+ -m server\.cli {' '.join(command)}\s*\[OPTIONS\]", result.stdout), (
        result.stdout
    )
    assert not (tmp_path / "telemed.db").exists(), "--help must not create or migrate the database"


def _commands(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(group, "commands", {}).items():
        yield from _commands(sub, (*path, name))


SCRIPTS = {"telemed": server_cli, "telemed-client": client_cli, "telemed-device": device_cli}
EVERY_COMMAND = [
    (script, path) for script, app in SCRIPTS.items() for path in _commands(typer.main.get_command(app))
]


@pytest.mark.parametrize(("script", "path"), EVERY_COMMAND, ids=[" ".join((s, *p)) for s, p in EVERY_COMMAND])
def test_every_command_of_every_script_has_help(script: str, path: tuple[str, ...]) -> None:
    """In process (fast), so commands added later are covered without listing them here."""
    command = typer.main.get_command(SCRIPTS[script])
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    result = CliRunner().invoke(SCRIPTS[script], [*path, "--help"], prog_name=script, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"Usage: {' '.join((script, *path))} [OPTIONS]" in result.output
    assert command.help, f"{' '.join(path)} has no help text"
    summary = " ".join(command.help.split("\n\n")[0].split())[:60]
    assert summary in " ".join(result.output.split()), result.output
