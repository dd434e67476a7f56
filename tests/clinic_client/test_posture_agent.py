"""The posture agent against the real server app: collectors or simulator → signed report → token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic_client.posture import (
    CollectorSource,
    FactSource,
    PostureAgent,
    PostureCheckFailed,
    PostureError,
    PostureRefused,
    PostureResult,
    ServerUnreachable,
    SimulatedSource,
    UnexpectedResponse,
)
from device_policy.collectors import FakeFiles, FakeRunner
from device_policy.collectors.linux import disk, firewall, modem, screenlock, secureboot, updates
from device_policy.keys import generate_device_key, public_key_b64
from server.app import create_app
from server.identity.models import Role
from server.services import Services
from server.settings import Environment
from tests.conftest import make_settings
from tests.server.factories import PASSWORD, add_user

FIXTURES = Path(__file__).parents[1] / "device_policy" / "fixtures" / "linux"
BASE = "http://telemed.test"
RELEASE = "6.1.0-18-amd64"
# What the saved mmcli outputs report: enrol these and the collected facts match.
SAVED_IDS = {"imei": "490154203237518", "iccid": "8944100000000000017", "imsi": "234150999999999"}
SIMULATOR_IDS = {"imei": "356938035643809", "iccid": "8944000000000000001", "imsi": "234150000000001"}


def _saved(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def saved_laptop(modem_output: str = "mmcli_modem_pin_enabled_unlocked.txt") -> CollectorSource:
    """The real Linux collectors, replaying outputs saved on a compliant Debian 12 laptop."""
    runner = FakeRunner(
        {
            disk.LSBLK_ARGV: _saved("lsblk_luks_lvm.json"),
            secureboot.MOKUTIL_ARGV: _saved("mokutil_enabled.txt"),
            firewall.UFW_ARGV: _saved("ufw_active.txt"),
            screenlock.LOCK_ENABLED_ARGV: _saved("gsettings_lock_enabled_true.txt"),
            screenlock.IDLE_DELAY_ARGV: _saved("gsettings_idle_delay_300.txt"),
            screenlock.LOCK_DELAY_ARGV: _saved("gsettings_lock_delay_0.txt"),
            updates.APT_ARGV: _saved("apt_get_s_up_to_date.txt"),
            modem.LIST_ARGV: _saved("mmcli_list_one.txt"),
            modem.modem_argv("0"): _saved(modem_output),
            modem.sim_argv("0"): _saved("mmcli_sim.txt"),
        }
    )
    files = FakeFiles(
        {
            "/proc/swaps": _saved("proc_swaps_lvm.txt"),
            "/etc/os-release": _saved("os_release_debian12.txt"),
            "/etc/modprobe.d/usb-storage.conf": _saved("modprobe_cis_usb_storage.conf"),
            "/proc/modules": _saved("proc_modules_clean.txt"),
            "/proc/cmdline": _saved("proc_cmdline.txt"),
            "/proc/sys/kernel/osrelease": RELEASE,
            f"/lib/modules/{RELEASE}/modules.builtin": _saved("modules_builtin.txt"),
        }
    )
    return CollectorSource(platform="linux", runner=runner, files=files)


@dataclass
class Server:
    services: Services
    http: httpx.AsyncClient
    admin: dict[str, str]

    async def enrol(self, device_id: str, ids: dict[str, str]) -> Ed25519PrivateKey:
        key = generate_device_key()
        body = {
            "id": device_id,
            "kind": "prison_laptop",
            "serial": "SN-1",
            "model": "Rugged 7440",
            "public_key": public_key_b64(key.public_key()),
            **ids,
        }
        resp = await self.http.post(f"{BASE}/api/v1/devices", json=body, headers=self.admin)
        assert resp.status_code == 201, resp.text
        return key

    def agent(self, device_id: str, key: Ed25519PrivateKey, source: FactSource | str) -> PostureAgent:
        return PostureAgent(
            server_url=BASE,
            device_id=device_id,
            private_key=key,
            source=source,
            client=self.http,
        )


@asynccontextmanager
async def running(db_url: str, tmp_path: Path, environment: Environment) -> AsyncIterator[Server]:
    settings = make_settings(db_url, tmp_path / "data", environment=environment)
    services = Services.build(settings)
    app = create_app(settings, services=services)
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
                add_user(services, "root", role=Role.ADMIN)
                login = await http.post(
                    f"{BASE}/api/v1/auth/login", json={"username": "root", "password": PASSWORD}
                )
                admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
                yield Server(services=services, http=http, admin=admin)
    finally:
        services.engine.dispose()


async def test_real_collectors_earn_a_token_that_proves_the_device_key(db_url: str, tmp_path: Path) -> None:
    async with running(db_url, tmp_path, Environment.TEST) as server:
        key = await server.enrol("laptop-01", SAVED_IDS)
        agent = server.agent("laptop-01", key, saved_laptop())
        result = await agent.attest()
        assert result.report.compliant is True
        assert result.report.result("sim-pin-lock").actual == ["sim"]
        assert agent.current is result and result.expires_in() <= timedelta(minutes=10)
        url = f"{BASE}/api/v1/devices/me/posture"
        me = await server.http.get(url, headers=agent.request_headers("GET", url))
        assert me.status_code == 200, me.text
        assert me.json()["device_id"] == "laptop-01" and me.json()["jti"] == result.jti


async def test_sim_pin_off_is_reported_with_the_fix(db_url: str, tmp_path: Path) -> None:
    async with running(db_url, tmp_path, Environment.TEST) as server:
        key = await server.enrol("laptop-01", SAVED_IDS)
        agent = server.agent("laptop-01", key, saved_laptop("mmcli_modem_pin_disabled.txt"))
        with pytest.raises(PostureCheckFailed) as failed:
            await agent.attest()
        [rule] = failed.value.failed_rules
        assert (rule.id, rule.severity, rule.actual) == ("sim-pin-lock", "block", [])
        assert rule.remediation == "Turn on the SIM PIN lock (currently enabled locks: none)."
        assert failed.value.report is not None and failed.value.report.compliant is False
        assert failed.value.code == "policy_failed" and not failed.value.permanent
        assert agent.current is None


async def test_simulated_profile_is_refused_outside_development(db_url: str, tmp_path: Path) -> None:
    async with running(db_url, tmp_path, Environment.TEST) as server:
        key = await server.enrol("laptop-01", SIMULATOR_IDS)
        with pytest.raises(PostureRefused) as refused:
            await server.agent("laptop-01", key, "compliant").attest()
        assert refused.value.code == "simulated_source_refused" and refused.value.status == 403
        assert refused.value.permanent


async def test_simulated_profiles_in_development(db_url: str, tmp_path: Path) -> None:
    async with running(db_url, tmp_path, Environment.DEVELOPMENT) as server:
        key = await server.enrol("laptop-01", SIMULATOR_IDS)
        assert (await server.agent("laptop-01", key, "compliant").attest()).report.compliant
        with pytest.raises(PostureCheckFailed) as failed:
            await server.agent("laptop-01", key, SimulatedSource("wrong-sim")).attest()
        assert [r.id for r in failed.value.failed_rules] == ["sim-iccid-enrolled", "sim-imsi-enrolled"]


async def test_reattestation_hands_over_fresh_tokens_then_the_revocation(db_url: str, tmp_path: Path) -> None:
    async with running(db_url, tmp_path, Environment.DEVELOPMENT) as server:
        key = await server.enrol("laptop-01", SIMULATOR_IDS)
        agent = server.agent("laptop-01", key, "compliant")
        tokens: list[PostureResult] = []
        failures: list[PostureError] = []
        done = asyncio.Event()

        async def on_token(result: PostureResult) -> None:
            tokens.append(result)
            if len(tokens) == 2:
                revoked = await server.http.post(
                    f"{BASE}/api/v1/devices/laptop-01/revoke", headers=server.admin
                )
                assert revoked.status_code == 200

        def on_failure(error: PostureError) -> None:
            failures.append(error)
            done.set()

        task = asyncio.create_task(
            agent.run_reattestation(
                every=timedelta(milliseconds=10), on_token=on_token, on_failure=on_failure
            )
        )
        try:
            await asyncio.wait_for(done.wait(), timeout=60)
        finally:
            task.cancel()
        assert len({t.jti for t in tokens}) == 2
        assert failures[0].code == "device_revoked" and failures[0].permanent


async def test_network_failures_and_foreign_answers_are_told_apart() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def proxy_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad gateway</html>")

    key = generate_device_key()
    for handler, expected in ((refuse, "server_unreachable"), (proxy_error, "unexpected_response")):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            agent = PostureAgent(
                server_url=BASE, device_id="laptop-01", private_key=key, source="compliant", client=http
            )
            with pytest.raises(ServerUnreachable) as error:
                await agent.attest()
            assert error.value.code == expected
    assert isinstance(error.value, UnexpectedResponse) and error.value.status == 502


async def test_no_proof_before_a_token_and_no_zero_interval() -> None:
    agent = PostureAgent(
        server_url=BASE, device_id="laptop-01", private_key=generate_device_key(), source="compliant"
    )
    try:
        with pytest.raises(PostureError) as error:
            agent.request_headers("GET", f"{BASE}/api/v1/devices/me/posture")
        assert error.value.code == "no_posture_token"
        with pytest.raises(ValueError):
            await agent.run_reattestation(every=timedelta(0), on_token=lambda _result: None)
    finally:
        await agent.aclose()
