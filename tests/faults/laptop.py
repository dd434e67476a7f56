"""The clinician hosting from the enrolled prison laptop, as the fault tests need it.

The laptop attests with facts as its Linux collectors report them (``modem``/``sim`` from
mmcli) for a named profile; the profile can change mid-call (``wrong-sim``: the SIM was
swapped out), and the next attestation reports it. The host joins with the laptop's posture
(join token bound to the laptop, posture in ``hello``) and reads the record under a grant
bound to the laptop's key, through the SDK's :class:`RecordsClient`.
"""

from __future__ import annotations

from dataclasses import dataclass

from clinic_client.posture import PostureAgent
from clinic_client.records import RecordsClient
from clinic_client.session import host_join_token, login
from device_policy.facts import FactSet
from device_policy.policy import DeviceKind, Platform
from server.db import session_scope
from server.devices.models import Device
from tests.clinic_client.test_call_e2e import Call, Party
from tests.server.devices.helpers import MODEM_IDS, collected_facts
from tests.server.factories import PASSWORD


class LaptopFacts:
    """The laptop's collectors; set ``profile`` to change what the next attestation reports."""

    def __init__(self, profile: str = "compliant") -> None:
        self.profile = profile

    async def collect(self, *, device_id: str, device_kind: DeviceKind) -> tuple[Platform, FactSet]:
        return Platform.LINUX, collected_facts(self.profile, device_id=device_id, kind=device_kind.value)


@dataclass
class LaptopHost:
    """The host's party in the call, its laptop's agent and facts, and its records client."""

    party: Party
    join_token: str
    agent: PostureAgent
    facts: LaptopFacts
    access_token: str
    records: RecordsClient


def enrol_modem(call: Call) -> None:
    """Record the laptop's modem and SIM at enrolment (what the SIM rules compare with)."""
    with session_scope(call.scene.services.engine) as session:
        device = session.get(Device, call.scene.laptop.id)
        assert device is not None
        device.imei, device.iccid, device.imsi = MODEM_IDS["imei"], MODEM_IDS["iccid"], MODEM_IDS["imsi"]


async def host_on_laptop(call: Call, *, facts: LaptopFacts | None = None) -> LaptopHost:
    """Sign in, attest the laptop, join as host with its posture; the records client is ready."""
    scene = call.scene
    enrol_modem(call)
    facts = facts or LaptopFacts()
    url = call.server_url
    agent = PostureAgent(
        server_url=url, device_id=scene.laptop.id, private_key=scene.laptop.key, source=facts
    )
    call.agents.append(agent)
    access = await login(url, "doctor", PASSWORD)
    ticket = await host_join_token(url, access, scene.consultation_id, posture=agent)
    party = await call._join("host", url, ticket.token, posture=agent)
    records = RecordsClient(server_url=url, access_token=access, posture=agent, private_key=scene.laptop.key)
    return LaptopHost(
        party=party, join_token=ticket.token, agent=agent, facts=facts, access_token=access, records=records
    )
