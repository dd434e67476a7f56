"""`telemed init | cat`: what init prints survives a pipe and can be pasted as it is."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from tests.server import test_cli
from tests.support.services import service_missing

server = test_cli.server  # the live `telemed serve` fixture


def test_the_sign_in_command_is_one_line_through_a_pipe_and_signs_in_as_pasted(
    server: tuple[str, Path],
) -> None:
    base, data_dir = server
    # stdout a pipe and 80 columns (rich's width when it cannot ask a terminal): `telemed init | cat`.
    init = test_cli.run_cli(
        "init", "--username", "first.admin-of-the-long-establishment-name", data_dir=data_dir, COLUMNS="80"
    )
    assert init.returncode == 0, init.stderr
    lines = init.stdout.splitlines()
    password = re.search(r"shown once:\s*\n\s*(\S+)", init.stdout)
    assert password, init.stdout

    [command] = [line for line in lines if line.startswith("curl ")]
    argv = shlex.split(command)
    assert argv[:4] == ["curl", "-s", "-X", "POST"]
    assert argv[4] == "http://127.0.0.1:8000/api/v1/auth/login"  # the default public URL
    assert json.loads(argv[argv.index("-d") + 1]) == {
        "username": "first.admin-of-the-long-establishment-name",
        "password": "<password>",
    }

    curl = shutil.which("curl")
    if curl is None:
        service_missing("curl")
        return
    pasted = command.replace("<password>", password.group(1)).replace("http://127.0.0.1:8000", base)
    done = subprocess.run(  # noqa: S603 - the printed command, split as a shell would
        [curl, *shlex.split(pasted)[1:]], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["user"]["username"] == "first.admin-of-the-long-establishment-name"
