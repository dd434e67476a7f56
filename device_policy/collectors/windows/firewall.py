"""Windows Defender Firewall: ``netsh advfirewall show allprofiles``.

Each of the Domain, Private and Public profiles prints ``State  ON|OFF`` and
``Firewall Policy  BlockInbound,AllowOutbound``. The firewall counts as active only when
all three profiles are on (a laptop moves between networks, and the profile follows the
network), and inbound is denied by default only when all three block inbound. The
labels are English-only; a localised Windows gives ``unknown``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.invoke import Problem, run_and_parse
from device_policy.collectors.judge import judged, unknown, unknown_all
from device_policy.collectors.names import FIREWALL_ACTIVE, FIREWALL_DEFAULT_INBOUND_DENY
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text
from device_policy.facts import Fact

ADVFIREWALL_ARGV = ("netsh", "advfirewall", "show", "allprofiles")
PROFILES = ("domain", "private", "public")
SOURCE = "netsh advfirewall"
_HEADER = re.compile(r"^(Domain|Private|Public) Profile Settings:\s*$", re.IGNORECASE)
_SETTING = re.compile(r"^(?P<key>\S+(?: \S+)*)\s{2,}(?P<value>\S.*?)\s*$")


@dataclass(frozen=True)
class FirewallProfile:
    """One profile's state and inbound policy ("on"/"off", "block"/"allow"; None if not shown)."""

    state: str | None = None
    inbound: str | None = None


@dataclass(frozen=True)
class FirewallProfiles:
    """What ``parse("netsh-firewall", …)`` returns."""

    profiles: dict[str, FirewallProfile] = field(default_factory=dict)

    @property
    def active(self) -> bool | None:
        """All three profiles on; ``None`` when a profile's state is missing."""
        states = [self.profiles.get(p, FirewallProfile()).state for p in PROFILES]
        if "off" in states:
            return False
        return None if None in states else True

    @property
    def default_inbound_deny(self) -> bool | None:
        """All three profiles block unsolicited inbound traffic."""
        if self.active is False:
            return False
        inbound = [self.profiles.get(p, FirewallProfile()).inbound for p in PROFILES]
        if "allow" in inbound:
            return False
        return None if None in inbound else True


def parse_advfirewall(text: str | bytes) -> FirewallProfiles:
    """Parse ``netsh advfirewall show allprofiles [state]``."""
    profiles: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in clean_text(text).splitlines():
        if (header := _HEADER.match(line.strip())) is not None:
            current = profiles.setdefault(header.group(1).lower(), {})
            continue
        if current is None or (setting := _SETTING.match(line.strip())) is None:
            continue
        current[setting.group("key").lower()] = setting.group("value")
    if not profiles:
        raise UnparsableOutput("netsh advfirewall", "no profile sections")
    return FirewallProfiles({name: _profile(values) for name, values in profiles.items()})


def _profile(values: dict[str, str]) -> FirewallProfile:
    state = {"on": "on", "off": "off"}.get(values.get("state", "").lower())
    policy = values.get("firewall policy", "").lower()
    inbound = None
    if policy.startswith("blockinbound"):  # BlockInbound or BlockInboundAlways
        inbound = "block"
    elif policy.startswith("allowinbound"):
        inbound = "allow"
    return FirewallProfile(state=state, inbound=inbound)


def _describe(profiles: FirewallProfiles, attribute: str) -> str:
    return ", ".join(
        f"{name} {getattr(profiles.profiles.get(name, FirewallProfile()), attribute) or 'not shown'}"
        for name in PROFILES
    )


async def collect_firewall(runner: CommandRunner) -> list[Fact]:
    """Facts ``firewall.active`` and ``firewall.default_inbound_deny``."""
    names = (FIREWALL_ACTIVE, FIREWALL_DEFAULT_INBOUND_DENY)
    profiles = await run_and_parse(runner, ADVFIREWALL_ARGV, parse_advfirewall, tool=SOURCE)
    if isinstance(profiles, Problem):
        return unknown_all(names, profiles, source=SOURCE)
    facts = []
    for name, value, attribute in (
        (FIREWALL_ACTIVE, profiles.active, "state"),
        (FIREWALL_DEFAULT_INBOUND_DENY, profiles.default_inbound_deny, "inbound"),
    ):
        detail = "profiles: " + _describe(profiles, attribute)
        if value is None:
            facts.append(unknown(name, detail, source=SOURCE))
        else:
            facts.append(judged(name, value, value, source=SOURCE, detail=detail))
    return facts
