"""``telemed-client console`` as a laptop starts it: a process, 127.0.0.1 only, a launch URL printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from device_policy.keys import save_private_key
from tests.clinic_client.console.conftest import Clinic
from tests.support.console_agent import AgentProcess


async def test_the_command_prints_a_launch_url_that_works_once_and_signs_in(
    clinic: Clinic, tmp_path: Path
) -> None:
    key_file = save_private_key(tmp_path / "device-key.pem", clinic.laptop.key)
    with AgentProcess(clinic.server_url, clinic.laptop.id, key_file, workdir=tmp_path / "agent") as running:
        assert running.launch_url.startswith(f"http://127.0.0.1:{running.port}/launch/")
        origin = {"Origin": running.base_url}
        async with httpx.AsyncClient(base_url=running.base_url, headers=origin) as http:
            launched = await http.get(running.launch_url)
            assert launched.status_code == 303
            assert (await http.get(running.launch_url)).status_code == 403
            signed_in = await http.post(
                "/api/sign-in", json={"username": "doctor", "password": "correct horse battery staple"}
            )
            assert signed_in.status_code == 200, signed_in.text
            check = await http.post("/api/device-check")
            assert check.json()["compliant"] is True
            assert (await http.get("/api/rooms")).status_code == 200
        # The right socket, another name (DNS rebinding): refused.
        with httpx.Client() as other:
            refused = other.get(
                f"http://127.0.0.1:{running.port}/api/state", headers={"Host": f"localhost:{running.port}"}
            )
            assert refused.status_code == 421
    assert "/launch/" in running.logs()
    assert "correct horse" not in running.logs()


def test_a_missing_device_key_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from clinic_client.cli import main; main()",
            "console",
            "--server",
            "http://127.0.0.1:9",
            "--device-id",
            "laptop-01",
            "--key-file",
            str(tmp_path / "missing.pem"),
            "--no-browser",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Cannot use the device key" in result.stderr
