"""The command-runner and file-reader seams: the real ones, and fakes that behave alike."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from device_policy.collectors import (
    CommandResult,
    FakeFiles,
    FakeRunner,
    LocalFiles,
    RunFailure,
    SubprocessRunner,
)
from device_policy.collectors.judge import run_problem

PY = sys.executable


async def test_subprocess_runner_returns_output_and_exit_status() -> None:
    runner = SubprocessRunner()
    result = await runner.run(
        [PY, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"], 10
    )
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (3, "out", "err")
    assert result.failure is None and not result.ok


async def test_subprocess_runner_passes_arguments_without_a_shell() -> None:
    result = await SubprocessRunner().run([PY, "-c", "import sys; print(sys.argv[1])", "$HOME; ls"], 10)
    assert result.stdout.strip() == "$HOME; ls"


@pytest.mark.skipif(sys.platform == "win32", reason="Windows tools are not localised by env")
async def test_subprocess_runner_asks_for_untranslated_messages() -> None:
    result = await SubprocessRunner().run([PY, "-c", "import os; print(os.environ['LC_ALL'])"], 10)
    assert result.stdout.strip() == "C"


async def test_missing_program_is_a_result_not_an_exception() -> None:
    result = await SubprocessRunner().run(["telemed-no-such-tool", "--status"], 10)
    assert result.failure is RunFailure.NOT_FOUND
    assert result.returncode == 127
    assert run_problem(result, "telemed-no-such-tool") == "telemed-no-such-tool is not installed"


async def test_a_program_that_hangs_is_killed_and_reported() -> None:
    result = await SubprocessRunner().run([PY, "-c", "import time; time.sleep(30)"], 0.3)
    assert result.failure is RunFailure.TIMEOUT
    assert run_problem(result, "sleeper") == "sleeper did not answer in time"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
async def test_a_file_that_is_not_executable_is_a_permission_failure(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = await SubprocessRunner().run([str(script)], 10)
    assert result.failure is RunFailure.PERMISSION


async def test_fake_runner_answers_saved_outputs_and_records_calls() -> None:
    runner = FakeRunner(
        {
            ("mokutil", "--sb-state"): "SecureBoot enabled\n",
            ("ufw", "status"): CommandResult(1, "", "ERROR: You need to be root to run this script"),
        }
    )
    assert (await runner.run(["mokutil", "--sb-state"], 5)).stdout == "SecureBoot enabled\n"
    denied = await runner.run(["ufw", "status"], 5)
    assert run_problem(denied, "ufw") == (
        "ufw exited with status 1 (insufficient privileges): ERROR: You need to be root to run this script"
    )
    missing = await runner.run(["nft", "-j", "list", "ruleset"], 5)
    assert missing.failure is RunFailure.NOT_FOUND
    assert runner.calls == [
        ("mokutil", "--sb-state"),
        ("ufw", "status"),
        ("nft", "-j", "list", "ruleset"),
    ]


async def test_fake_runner_decodes_saved_bytes() -> None:
    runner = FakeRunner({("netsh", "mbn"): "State : Ready\r\n".encode("utf-16")})
    assert (await runner.run(["netsh", "mbn"], 5)).stdout == "State : Ready\r\n"


def test_fake_files_behave_like_a_filesystem() -> None:
    files = FakeFiles(
        {
            "/etc/modprobe.d/usb.conf": "blacklist usb-storage\n",
            "/sys/firmware/efi/efivars/SecureBoot-x": PermissionError(13, "Permission denied"),
        }
    )
    assert files.read_bytes("/etc/modprobe.d/usb.conf") == b"blacklist usb-storage\n"
    assert files.list_dir("/etc/modprobe.d") == ["usb.conf"]
    assert files.list_dir("/etc") == ["modprobe.d"]
    assert files.exists("/sys/firmware/efi") and not files.exists("/proc/swaps")
    with pytest.raises(FileNotFoundError):
        files.read_bytes("/proc/swaps")
    with pytest.raises(PermissionError):
        files.read_bytes("/sys/firmware/efi/efivars/SecureBoot-x")
    with pytest.raises(IsADirectoryError):
        files.read_bytes("/etc")


def test_local_files_read_below_a_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text("ID=debian\n")
    files = LocalFiles(tmp_path)
    assert files.read_bytes("/etc/os-release") == b"ID=debian\n"
    assert files.list_dir("/etc") == ["os-release"]
    assert files.exists("/etc") and not files.exists("/proc")
    with pytest.raises(FileNotFoundError):
        files.read_bytes("/proc/swaps")
