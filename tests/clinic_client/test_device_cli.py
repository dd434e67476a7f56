"""``telemed-device`` as a device owner uses it: make a key, parse saved outputs, check against a server."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from clinic_client.device_cli import app
from device_policy.keys import key_thumbprint, load_private_key, public_key_b64
from tests.support.services import free_port

FIXTURES = Path(__file__).parents[1] / "device_policy" / "fixtures" / "linux"
DEVICE = [sys.executable, "-m", "clinic_client.device_cli"]
TELEMED = [sys.executable, "-m", "server.cli"]
runner = CliRunner()


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
    env.update({"TELEMED_DATA_DIR": str(data_dir), "TELEMED_LOG_JSON": "true", "COLUMNS": "200"})
    return env


def run(command: list[str], *args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own commands
        [*command, *args], env=_env(data_dir), capture_output=True, text=True, timeout=120, check=False
    )


# --- parse -------------------------------------------------------------------------------


def test_parse_prints_the_modem_lock_state_as_json() -> None:
    result = runner.invoke(
        app, ["parse", "mmcli-modem", str(FIXTURES / "mmcli_modem_pin_enabled_unlocked.txt")]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["unlock_required"] == "none"
    assert found["enabled_locks"] == ["sim"]
    assert found["imei"] == "490154203237518"
    off = runner.invoke(app, ["parse", "mmcli-modem", str(FIXTURES / "mmcli_modem_pin_disabled.txt")])
    assert json.loads(off.stdout)["enabled_locks"] == []


def test_parse_prints_the_sim_identifiers() -> None:
    result = runner.invoke(app, ["parse", "mmcli-sim", str(FIXTURES / "mmcli_sim.txt")])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert (found["iccid"], found["imsi"]) == ("8944100000000000017", "234150999999999")


@pytest.mark.parametrize(
    ("kind", "fixture", "expected"),
    [
        (
            "netsh-mbn-interfaces",
            "netsh_mbn_interfaces.txt",
            {"service_running": True, "device_id": "490154203237518"},
        ),
        (
            "netsh-mbn-readyinfo",
            "netsh_mbn_readyinfo_utf16.txt",
            {"iccid": "8944100000000000017", "imsi": "234150999999999"},
        ),
        ("manage-bde", "manage_bde_de.txt", {"volume": "C:", "protection": "on", "fully_encrypted": True}),
    ],
)
def test_parse_prints_the_windows_tools_facts_as_json(
    kind: str, fixture: str, expected: dict[str, object]
) -> None:
    result = runner.invoke(app, ["parse", kind, str(FIXTURES.parent / "windows" / fixture)])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    # Lists of interfaces and volumes: the first one carries the per-item keys.
    flat = {**found, **next((v[0] for v in found.values() if isinstance(v, list) and v), {})}
    assert {key: flat[key] for key in expected} == expected


def test_parse_refuses_an_unknown_kind_and_a_file_of_another_tool() -> None:
    unknown = runner.invoke(app, ["parse", "mmcli-toaster", str(FIXTURES / "mmcli_sim.txt")])
    assert unknown.exit_code == 2
    assert "unknown_collector" in unknown.stderr and "mmcli-modem" in unknown.stderr
    wrong = runner.invoke(app, ["parse", "mmcli-sim", str(FIXTURES / "os_release_debian12.txt")])
    assert wrong.exit_code == 1 and "unparsable_output" in wrong.stderr


# --- enrol -------------------------------------------------------------------------------


def test_enrol_writes_a_private_key_only_the_owner_can_read(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "device-key.pem"
    args = [
        "enrol",
        "--id",
        "laptop-01",
        "--kind",
        "prison_laptop",
        "--key-file",
        str(key_file),
        "--simulate",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = load_private_key(key_file)
    assert public_key_b64(key.public_key()) in result.stdout
    assert key_thumbprint(key.public_key()) in result.stdout
    assert "356938035643809" in result.stdout  # the simulator's IMEI, to enrol with
    pem = key_file.read_bytes()

    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert key_file.read_bytes() == pem
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0 and key_file.read_bytes() != pem


def test_facts_prints_a_simulated_profile_as_json() -> None:
    result = runner.invoke(app, ["facts", "--simulate", "sim-pin-off", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)["facts"]
    assert facts["modem.enabled_locks"] == {
        "status": "fail",
        "value": [],
        "detail": "simulated",
        "source": "simulated",
    }
    bad = runner.invoke(app, ["facts", "--simulate", "nonsense"])
    assert bad.exit_code == 2 and "compliant" in bad.stderr


# --- check against a real server ---------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``telemed serve`` in development mode (simulated facts accepted), on a free port."""
    data_dir = tmp_path / "data"
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(  # noqa: S603
        [*TELEMED, "serve", "--port", str(port)], env=_env(data_dir), stdout=log, stderr=subprocess.STDOUT
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


def _enrol_as_printed(key_file: Path, data_dir: Path) -> None:
    """Make a key with telemed-device, then run the enrolment line it printed for the admin."""
    made = run(
        DEVICE,
        "enrol",
        "--id",
        "laptop-01",
        "--kind",
        "prison_laptop",
        "--key-file",
        str(key_file),
        "--simulate",
        data_dir=data_dir,
    )
    assert made.returncode == 0, made.stderr
    [line] = [line for line in made.stdout.splitlines() if line.startswith("telemed device enrol ")]
    words = shlex.split(line)[1:]  # drop the program name
    filled = [{"<serial>": "SN-0001", "<model>": "Rugged-7440"}.get(w, w) for w in words]
    enrolled = run(TELEMED, *filled, data_dir=data_dir)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "Enrolled prison_laptop laptop-01" in enrolled.stdout


def test_check_passes_for_a_compliant_device_and_explains_a_failure(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    base, data_dir = server
    key_file = tmp_path / "device-key.pem"
    _enrol_as_printed(key_file, data_dir)
    check = [
        "check",
        "--server",
        base,
        "--device-id",
        "laptop-01",
        "--key-file",
        str(key_file),
        "--simulate",
    ]

    ok = run(DEVICE, *check, "compliant", data_dir=data_dir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "COMPLIANT" in ok.stdout and "SIM PIN lock is on" in ok.stdout

    failed = run(DEVICE, *check, "sim-pin-off", data_dir=data_dir)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "NOT COMPLIANT" in failed.stdout
    assert "Turn on the SIM PIN lock (currently enabled locks: none)." in failed.stdout

    as_json = run(DEVICE, *check, "sim-pin-off", "--json", data_dir=data_dir)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["compliant"] is False and report["error"]["code"] == "policy_failed"
    assert [r["id"] for r in report["failed_rules"]] == ["sim-pin-lock"]
    assert report["failed_rules"][0]["actual"] == []
    assert any(r["id"] == "disk-root-encrypted" and r["outcome"] == "pass" for r in report["results"])

    # The admin sees the failed checks, then revokes the laptop: the next check is refused.
    listed = run(TELEMED, "device", "checks", "--outcome", "fail", data_dir=data_dir)
    assert listed.returncode == 0 and "sim-pin-lock" in listed.stdout and "laptop-01" in listed.stdout
    revoked = run(TELEMED, "device", "revoke", "laptop-01", "--reason", "lost", data_dir=data_dir)
    assert revoked.returncode == 0, revoked.stderr
    refused = run(DEVICE, *check, "compliant", data_dir=data_dir)
    assert refused.returncode == 3
    assert "device_revoked" in refused.stderr


def test_check_tells_an_unreachable_server_from_a_refusal(tmp_path: Path) -> None:
    key_file = tmp_path / "device-key.pem"
    made = runner.invoke(
        app, ["enrol", "--id", "laptop-01", "--kind", "room_endpoint", "--key-file", str(key_file)]
    )
    assert made.exit_code == 0, made.output
    nobody = f"http://127.0.0.1:{free_port()}"
    args = ["check", "--server", nobody, "--device-id", "laptop-01", "--key-file", str(key_file)]
    result = runner.invoke(app, [*args, "--simulate", "compliant", "--json"])
    assert result.exit_code == 4
    assert json.loads(result.stdout)["error"]["code"] == "server_unreachable"
    missing_key = runner.invoke(app, [*args[:-1], str(tmp_path / "nope.pem")])
    assert missing_key.exit_code == 2 and "telemed-device enrol" in missing_key.stderr
