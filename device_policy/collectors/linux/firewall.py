"""Host firewall on Linux: ``ufw status verbose``, and the nftables ruleset behind any front end.

ufw answers directly ("Status: active", "Default: deny (incoming)…"). Otherwise
``nft -j list ruleset`` is inspected: the firewall is active when a filter chain hooks
``input`` and either drops by default or has rules; inbound is denied by default when the
input hook's chains end in drop/reject for both IPv4 and IPv6 (an ``inet`` chain covers
both; ``ip`` and ``ip6`` chains one each). nft needs root; both tools failing is
``unknown``, never a pass.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.judge import judged, run_problem, unknown
from device_policy.collectors.names import FIREWALL_ACTIVE, FIREWALL_DEFAULT_INBOUND_DENY
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text
from device_policy.facts import Fact

UFW_ARGV = ("ufw", "status", "verbose")
NFT_ARGV = ("nft", "-j", "list", "ruleset")
_DENY = ("deny", "reject")
_TERMINAL_VERDICTS = {"drop", "reject"}
_HARMLESS_STATEMENTS = {"counter", "log", "limit"}


@dataclass(frozen=True)
class UfwStatus:
    """What ``parse("ufw", …)`` returns."""

    active: bool
    default_incoming: str | None
    default_outgoing: str | None

    @property
    def default_inbound_deny(self) -> bool | None:
        """Whether unmatched inbound traffic is dropped or rejected."""
        if not self.active:
            return False
        if self.default_incoming is None:
            return None
        return self.default_incoming in _DENY


@dataclass(frozen=True)
class InputChain:
    """A base chain on the input hook."""

    family: str
    table: str
    name: str
    policy: str
    rules: int
    ends_in_drop: bool

    @property
    def denies(self) -> bool:
        """Whether traffic no rule accepted is dropped."""
        return self.policy == "drop" or self.ends_in_drop


@dataclass(frozen=True)
class NftRuleset:
    """What ``parse("nft", …)`` returns."""

    input_chains: tuple[InputChain, ...]

    @property
    def active(self) -> bool:
        """Some filter chain on the input hook drops by default or has rules."""
        return any(chain.denies or chain.rules for chain in self.input_chains)

    @property
    def default_inbound_deny(self) -> bool:
        """IPv4 and IPv6 inbound are both dropped unless a rule accepts them."""
        denying = {chain.family for chain in self.input_chains if chain.denies}
        return "inet" in denying or {"ip", "ip6"} <= denying


def parse_ufw(text: str | bytes) -> UfwStatus:
    """Parse ``ufw status verbose``."""
    text = clean_text(text)
    status = re.search(r"^Status:\s*(\w+)", text, re.MULTILINE)
    if status is None:
        raise UnparsableOutput("ufw", "no Status line")
    default = re.search(r"^Default:\s*(.+)$", text, re.MULTILINE)
    incoming = outgoing = None
    if default:
        for part in default.group(1).split(","):
            found = re.match(r"\s*(\w+)\s*\((\w+)\)", part)
            if found and found.group(2) == "incoming":
                incoming = found.group(1)
            elif found and found.group(2) == "outgoing":
                outgoing = found.group(1)
    return UfwStatus(status.group(1) == "active", incoming, outgoing)


def parse_nft(text: str | bytes) -> NftRuleset:
    """Parse ``nft -j list ruleset`` into the base chains hooked on input."""
    try:
        data = json.loads(clean_text(text))
    except json.JSONDecodeError as exc:
        raise UnparsableOutput("nft", f"not JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("nftables"), list):
        raise UnparsableOutput("nft", 'no "nftables" list')
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[list[Any]]] = {}
    for item in data["nftables"]:
        if not isinstance(item, dict):
            continue
        if isinstance(chain := item.get("chain"), dict):
            chains[_chain_key(chain, "name")] = chain
        elif isinstance(rule := item.get("rule"), dict):
            expr = rule.get("expr")
            rules.setdefault(_chain_key(rule, "chain"), []).append(expr if isinstance(expr, list) else [])
    found = []
    for key, chain in chains.items():
        if chain.get("hook") != "input" or chain.get("type", "filter") != "filter":
            continue
        if key[0] not in ("inet", "ip", "ip6"):
            continue
        chain_rules = rules.get(key, [])
        found.append(
            InputChain(
                family=key[0],
                table=key[1],
                name=key[2],
                policy=str(chain.get("policy", "accept")),
                rules=len(chain_rules),
                ends_in_drop=bool(chain_rules) and _unconditional_drop(chain_rules[-1]),
            )
        )
    return NftRuleset(tuple(found))


def _chain_key(obj: dict[str, Any], name_field: str) -> tuple[str, str, str]:
    return (str(obj.get("family")), str(obj.get("table")), str(obj.get(name_field)))


def _unconditional_drop(expr: list[Any]) -> bool:
    """A rule with no match, only counting/logging and a drop or reject verdict."""
    keys: set[str] = set()
    for statement in expr:
        if not isinstance(statement, dict) or len(statement) != 1:
            return False
        keys.update(statement)
    return bool(keys & _TERMINAL_VERDICTS) and keys <= _TERMINAL_VERDICTS | _HARMLESS_STATEMENTS


async def collect_firewall(runner: CommandRunner) -> list[Fact]:
    """Facts ``firewall.active`` and ``firewall.default_inbound_deny``."""
    ufw_result = await runner.run(UFW_ARGV, timeout=10)
    ufw_problem = run_problem(ufw_result, "ufw")
    ufw: UfwStatus | None = None
    if not ufw_problem:
        try:
            ufw = parse_ufw(ufw_result.stdout)
        except UnparsableOutput as exc:
            ufw_problem = exc.detail
    if ufw is not None and ufw.active:
        deny = ufw.default_inbound_deny
        return [
            judged(FIREWALL_ACTIVE, True, True, source="ufw", detail="ufw is active"),
            unknown(FIREWALL_DEFAULT_INBOUND_DENY, "ufw printed no default policy", source="ufw")
            if deny is None
            else judged(
                FIREWALL_DEFAULT_INBOUND_DENY,
                deny,
                deny,
                source="ufw",
                detail=f"ufw default incoming policy: {ufw.default_incoming}",
            ),
        ]

    nft_result = await runner.run(NFT_ARGV, timeout=10)
    nft_problem = run_problem(nft_result, "nft")
    ruleset: NftRuleset | None = None
    if not nft_problem:
        try:
            ruleset = parse_nft(nft_result.stdout)
        except UnparsableOutput as exc:
            nft_problem = exc.detail
    if ruleset is None:
        # ufw being inactive says nothing about a firewall managed some other way.
        reasons = "; ".join(r for r in (ufw_problem, "ufw is inactive" if ufw else None, nft_problem) if r)
        return [
            unknown(FIREWALL_ACTIVE, reasons, source="nft"),
            unknown(FIREWALL_DEFAULT_INBOUND_DENY, reasons, source="nft"),
        ]
    chains = ", ".join(
        f"{c.family} {c.table} {c.name} (policy {c.policy}, {c.rules} rules)" for c in ruleset.input_chains
    )
    where = f"input chains: {chains}" if chains else "no filter chain on the input hook"
    return [
        judged(FIREWALL_ACTIVE, ruleset.active, ruleset.active, source="nft", detail=where),
        judged(
            FIREWALL_DEFAULT_INBOUND_DENY,
            ruleset.default_inbound_deny,
            ruleset.default_inbound_deny,
            source="nft",
            detail=where,
        ),
    ]
