"""The posture agent: prove to the telemed server that this device meets the device policy.

One attestation is a challenge–response round trip::

    POST /api/v1/devices/{id}/challenge   → nonce (single use, ~2 min), policy hash
    collect the facts (real collectors, or a simulated profile in development)
    sign {device_id, nonce, collected_at, agent_version, policy_hash, facts} with the device key
    POST /api/v1/devices/{id}/attest      → posture token (≤ 10 min, bound to the device key)
                                            or 403 policy_failed with the failed rules

A posture token is useless on its own: every request that carries it also carries a
request proof signed by the device key (:meth:`PostureAgent.request_headers`).

Example — attest once, then call an endpoint that needs a compliant device::

    import asyncio
    from device_policy.keys import load_private_key
    from clinic_client.posture import CollectorSource, PostureAgent, PostureCheckFailed

    async def main() -> None:
        async with PostureAgent(
            server_url="https://telemed.example.org",
            device_id="laptop-hmp-example-01",
            private_key=load_private_key("/etc/telemed/device-key.pem"),
            source=CollectorSource(),
        ) as agent:
            try:
                result = await agent.attest()
            except PostureCheckFailed as failed:
                for rule in failed.failed_rules:
                    print(rule.title, "->", rule.remediation)
                return
            url = "https://telemed.example.org/api/v1/devices/me/posture"
            headers = agent.request_headers("GET", url)
            ...

    asyncio.run(main())

During a call, keep the token fresh in the background (the signalling client does this)::

    task = asyncio.create_task(
        agent.run_reattestation(every=timedelta(minutes=3), on_token=send_posture, on_failure=report)
    )
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from device_policy.attestation import AttestationReport, sign_report
from device_policy.collectors import (
    CommandRunner,
    FileReader,
    LocalFiles,
    SubprocessRunner,
    collect,
    platform_name,
)
from device_policy.facts import FactSet, JsonValue
from device_policy.policy import DeviceKind, EnrolledIdentity, Platform, PolicyResult
from device_policy.proof import sign_request_proof
from device_policy.simulated import SimulatedProfile, simulated_facts

__all__ = [
    "AGENT_VERSION",
    "Challenge",
    "CollectorSource",
    "FactSource",
    "FailedRule",
    "PostureAgent",
    "PostureCheckFailed",
    "PostureError",
    "PostureRefused",
    "PostureResult",
    "ServerUnreachable",
    "SimulatedSource",
    "UnexpectedResponse",
]

AGENT_VERSION = "telemed-agent/0.1.0"
DEFAULT_TIMEOUT_S = 30.0
# Refusals that another attempt cannot fix: an admin (or a reinstall) has to act.
_PERMANENT = frozenset({"unknown_device", "device_revoked", "bad_signature", "simulated_source_refused"})


# --- errors ------------------------------------------------------------------------------


class PostureError(Exception):
    """Base of the agent's errors; ``code`` is stable, ``detail`` is for people.

    ::

        PostureError
        ├── ServerUnreachable        server_unreachable   no answer (network, DNS, TLS, timeout)
        │   └── UnexpectedResponse   unexpected_response  an answer that is not the telemed API
        └── PostureRefused           <server's code>      the server refused (nonce_reused, …)
            └── PostureCheckFailed   policy_failed        the device does not meet the policy
    """

    code = "posture_error"
    title = "Posture check error"

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.status = status

    @property
    def permanent(self) -> bool:
        """True when trying again cannot help until someone acts (revoked, unknown device…)."""
        return self.code in _PERMANENT


class ServerUnreachable(PostureError):
    """The server could not be reached (connection, DNS, TLS or timeout)."""

    code, title = "server_unreachable", "The telemed server could not be reached"


class UnexpectedResponse(ServerUnreachable):
    """Something answered, but not with the telemed API's JSON (a proxy error page…)."""

    code, title = "unexpected_response", "The server's answer was not understood"


class PostureRefused(PostureError):
    """The server refused the attestation; ``code`` is the server's problem code."""

    code, title = "attestation_refused", "The server refused the posture report"


@dataclass(frozen=True)
class FailedRule:
    """A policy rule the device did not pass, with what was seen and how to fix it."""

    id: str
    title: str
    severity: str
    outcome: str
    actual: JsonValue
    remediation: str | None

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> FailedRule:
        """Read one entry of the server's ``failed_rules`` list."""
        return cls(
            id=str(item.get("id", "")),
            title=str(item.get("title", "")),
            severity=str(item.get("severity", "")),
            outcome=str(item.get("outcome", "fail")),
            actual=item.get("actual"),
            remediation=item.get("remediation"),
        )


class PostureCheckFailed(PostureRefused):
    """The device does not meet the policy: ``failed_rules`` say what to fix."""

    code, title = "policy_failed", "The device does not meet the policy"

    def __init__(
        self,
        detail: str,
        *,
        failed_rules: tuple[FailedRule, ...],
        warnings: tuple[FailedRule, ...] = (),
        report: PolicyResult | None = None,
        status: int | None = 403,
    ) -> None:
        super().__init__(detail, status=status)
        self.failed_rules = failed_rules
        self.warnings = warnings
        self.report = report


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """A nonce from the server to answer once, and the policy to answer it for."""

    device_id: str
    device_kind: DeviceKind
    nonce: str
    expires_at: datetime
    policy_version: str
    policy_hash: str


@dataclass(frozen=True)
class PostureResult:
    """A posture token for this device, and the rule report behind it.

    ``token`` goes in ``X-Posture-Token``; ``jti`` is what request proofs are bound to.
    """

    token: str = field(repr=False)
    jti: str
    expires_at: datetime
    policy_version: str
    policy_hash: str
    report: PolicyResult
    warnings: tuple[FailedRule, ...] = ()

    def expires_in(self, now: datetime | None = None) -> timedelta:
        """Time left before the token lapses (negative once it has)."""
        return self.expires_at - (now or datetime.now(UTC))


# --- fact sources ------------------------------------------------------------------------


class FactSource(Protocol):
    """Where the agent's facts come from: :class:`CollectorSource` or :class:`SimulatedSource`."""

    async def collect(self, *, device_id: str, device_kind: DeviceKind) -> tuple[Platform, FactSet]:
        """Observe the device now; return its platform and facts."""
        ...


class CollectorSource:
    """The real posture collectors of this machine (Linux or Windows).

    Example::

        platform, facts = await CollectorSource().collect(device_id="laptop-01",
                                                          device_kind=DeviceKind.PRISON_LAPTOP)
        facts["modem.enabled_locks"].value   # ["sim"] when the SIM PIN is on
    """

    def __init__(
        self,
        *,
        platform: str | None = None,
        runner: CommandRunner | None = None,
        files: FileReader | None = None,
    ) -> None:
        self._platform = platform_name(platform)
        self._runner = runner or SubprocessRunner()
        self._files = files or LocalFiles()

    async def collect(self, *, device_id: str, device_kind: DeviceKind) -> tuple[Platform, FactSet]:
        """Run every collector for this platform."""
        facts = await collect(self._platform, self._runner, self._files)
        return Platform(self._platform), facts


class SimulatedSource:
    """A named simulated profile (``compliant``, ``sim-pin-off``, …) — development servers only.

    Without identifiers the simulator reports fixed placeholder IMEI/ICCID/IMSI values;
    enrol the device with those (``telemed-device enrol --simulate`` prints them) or pass
    the enrolled ones here.

    Example::

        agent = PostureAgent(server_url=url, device_id="laptop-01", private_key=key,
                             source=SimulatedSource("sim-pin-off"))
    """

    def __init__(
        self,
        profile: SimulatedProfile | str = SimulatedProfile.COMPLIANT,
        *,
        platform: Platform | str = Platform.LINUX,
        imei: str | None = None,
        iccid: str | None = None,
        imsi: str | None = None,
    ) -> None:
        self.profile = SimulatedProfile(profile)
        self._platform = Platform(platform)
        self._ids = {"imei": imei, "iccid": iccid, "imsi": imsi}

    async def collect(self, *, device_id: str, device_kind: DeviceKind) -> tuple[Platform, FactSet]:
        """The profile's facts (each marked ``source="simulated"``)."""
        enrolled = EnrolledIdentity(device_id=device_id, device_kind=device_kind, **self._ids)
        return self._platform, simulated_facts(self.profile, enrolled=enrolled, platform=self._platform)


# --- the agent ---------------------------------------------------------------------------

OnToken = Callable[[PostureResult], Awaitable[None] | None]
OnFailure = Callable[[PostureError], Awaitable[None] | None]


class PostureAgent:
    """Attests this device to a telemed server and signs request proofs with its key.

    ``client`` may be any ``httpx.AsyncClient`` (for a proxy, custom TLS, or an ASGI app in
    tests); the agent closes only a client it created itself.

    Example::

        async with PostureAgent(server_url=url, device_id="laptop-01", private_key=key,
                                source="compliant") as agent:
            result = await agent.attest()
            result.report.compliant            # True
            agent.request_headers("GET", f"{url}/api/v1/devices/me/posture")
    """

    def __init__(
        self,
        *,
        server_url: str,
        device_id: str,
        private_key: Ed25519PrivateKey,
        source: FactSource | SimulatedProfile | str,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        agent_version: str = AGENT_VERSION,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.device_id = device_id
        self.source: FactSource = SimulatedSource(source) if isinstance(source, str) else source
        self._key = private_key
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._agent_version = agent_version
        self._current: PostureResult | None = None

    async def __aenter__(self) -> PostureAgent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if the agent created it."""
        if self._own_client:
            await self._client.aclose()

    @property
    def current(self) -> PostureResult | None:
        """The latest posture token obtained, if any (it may have expired)."""
        return self._current

    def _url(self, action: str) -> str:
        return f"{self.server_url}/api/v1/devices/{quote(self.device_id, safe='')}/{action}"

    async def challenge(self) -> Challenge:
        """Ask the server for a fresh nonce to answer.

        Example::

            challenge = await agent.challenge()
            challenge.policy_version      # "2026.11.1"
        """
        body = await self._post(self._url("challenge"))
        try:
            return Challenge(
                device_id=str(body["device_id"]),
                device_kind=DeviceKind(body["device_kind"]),
                nonce=str(body["nonce"]),
                expires_at=datetime.fromisoformat(str(body["expires_at"])),
                policy_version=str(body["policy_version"]),
                policy_hash=str(body["policy_hash"]),
            )
        except (KeyError, ValueError, TypeError):
            raise UnexpectedResponse("The challenge response is missing fields") from None

    async def attest(self) -> PostureResult:
        """Run one full attestation; the posture token, or an error saying why not.

        Raises :class:`PostureCheckFailed` (with the failed rules) when the device does not
        meet the policy, :class:`PostureRefused` for any other refusal and
        :class:`ServerUnreachable` when the server cannot be reached.

        Example::

            try:
                result = await agent.attest()
            except PostureCheckFailed as failed:
                print([rule.id for rule in failed.failed_rules])   # ["sim-pin-lock"]
        """
        challenge = await self.challenge()
        platform, facts = await self.source.collect(
            device_id=self.device_id, device_kind=challenge.device_kind
        )
        report = AttestationReport(
            device_id=self.device_id,
            nonce=challenge.nonce,
            collected_at=datetime.now(UTC),
            agent_version=self._agent_version,
            policy_hash=challenge.policy_hash,
            platform=platform,
            device_kind=challenge.device_kind,
            facts=facts,
        )
        signed = sign_report(report, self._key)
        body = await self._post(self._url("attest"), content=signed.model_dump_json().encode())
        try:
            result = PostureResult(
                token=str(body["posture_token"]),
                jti=str(body["token_jti"]),
                expires_at=datetime.fromisoformat(str(body["expires_at"])),
                policy_version=str(body["policy_version"]),
                policy_hash=str(body["policy_hash"]),
                report=PolicyResult.model_validate(body["report"]),
                warnings=tuple(FailedRule.from_wire(w) for w in body.get("warnings", [])),
            )
        except (KeyError, ValueError, TypeError, ValidationError):
            raise UnexpectedResponse("The attestation response is missing fields") from None
        self._current = result
        return result

    def proof(
        self, method: str, url: str, *, nonce: str | None = None, token: PostureResult | None = None
    ) -> str:
        """A request proof for ``method url`` bound to the current posture token.

        ``nonce`` defaults to a fresh random value (HTTP); for the signalling socket pass
        the join token's jti, with ``method="WS"`` and the socket URL.

        Example::

            proof = agent.proof("WS", "wss://telemed.example.org/ws", nonce=join_claims.jti)
        """
        posture = token or self._current
        if posture is None:
            raise PostureError("No posture token yet; call attest() first", code="no_posture_token")
        return sign_request_proof(
            self._key,
            method=method,
            url=url,
            token_jti=posture.jti,
            iat=datetime.now(UTC),
            nonce=nonce or secrets.token_urlsafe(16),
        )

    def request_headers(self, method: str, url: str) -> dict[str, str]:
        """``X-Posture-Token`` and a fresh ``X-Posture-Proof`` for one HTTP request.

        Example::

            url = f"{server}/api/v1/devices/me/join-token"
            await http.post(url, headers=agent.request_headers("POST", url))
        """
        if self._current is None:
            raise PostureError("No posture token yet; call attest() first", code="no_posture_token")
        return {"X-Posture-Token": self._current.token, "X-Posture-Proof": self.proof(method, url)}

    async def run_reattestation(
        self,
        *,
        every: timedelta,
        on_token: OnToken,
        on_failure: OnFailure | None = None,
    ) -> None:
        """Attest again every ``every`` until cancelled; hand each token or failure to the callbacks.

        Keep ``every`` well under the token lifetime (5 minutes on the default server) so a
        fresh token always arrives before the old one lapses. A failure does not stop the
        loop; ``on_failure`` may cancel the task, e.g. when ``error.permanent`` is true.
        Callbacks may be plain functions or coroutines.

        Example::

            async def send_posture(result: PostureResult) -> None:
                await socket.send_json({"type": "posture", "posture_token": result.token,
                                        "posture_proof": agent.proof("WS", ws_url, nonce=join_jti)})

            task = asyncio.create_task(agent.run_reattestation(
                every=timedelta(minutes=3), on_token=send_posture, on_failure=warn_user))
            ...
            task.cancel()
        """
        if every <= timedelta(0):
            raise ValueError("every must be a positive interval")
        while True:
            await asyncio.sleep(every.total_seconds())
            try:
                result = await self.attest()
            except PostureError as exc:
                if on_failure is not None:
                    await _call(on_failure, exc)
                continue
            await _call(on_token, result)

    async def _post(self, url: str, *, content: bytes | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._client.post(url, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"Cannot reach {self.server_url}: {type(exc).__name__}") from None
        return _json_or_raise(response)


async def _call(callback: Callable[[Any], Awaitable[None] | None], value: Any) -> None:
    outcome = callback(value)
    if inspect.isawaitable(outcome):
        await outcome


def _json_or_raise(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UnexpectedResponse(
            f"The server answered HTTP {response.status_code} without a JSON object",
            status=response.status_code,
        )
    if response.is_success:
        return body
    code = str(body.get("code") or f"http_{response.status_code}")
    detail = str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
    if code == "policy_failed":
        report = None
        if isinstance(body.get("report"), dict):
            try:
                report = PolicyResult.model_validate(body["report"])
            except ValidationError:
                report = None
        raise PostureCheckFailed(
            detail,
            failed_rules=tuple(
                FailedRule.from_wire(r) for r in body.get("failed_rules", []) if isinstance(r, dict)
            ),
            warnings=tuple(FailedRule.from_wire(r) for r in body.get("warnings", []) if isinstance(r, dict)),
            report=report,
            status=response.status_code,
        )
    if "code" not in body:
        raise UnexpectedResponse(
            f"The server answered HTTP {response.status_code} without a problem code",
            status=response.status_code,
        )
    raise PostureRefused(detail, code=code, status=response.status_code)
