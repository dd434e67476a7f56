"""firewall.active and firewall.default_inbound_deny from ufw and nftables."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.collectors import CommandResult, FakeRunner, UnparsableOutput
from device_policy.collectors.linux.firewall import (
    NFT_ARGV,
    UFW_ARGV,
    collect_firewall,
    parse_nft,
    parse_ufw,
)
from device_policy.facts import Fact, FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "linux"


def saved(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


async def firewall(runner: FakeRunner) -> dict[str, Fact]:
    return {fact.name: fact for fact in await collect_firewall(runner)}


def test_ufw_active_with_default_deny() -> None:
    status = parse_ufw(saved("ufw_active.txt"))
    assert (status.active, status.default_incoming, status.default_outgoing) == (
        True,
        "deny",
        "allow",
    )
    assert status.default_inbound_deny is True


def test_ufw_inactive() -> None:
    status = parse_ufw(saved("ufw_inactive.txt"))
    assert (status.active, status.default_inbound_deny) == (False, False)


@pytest.mark.parametrize(
    ("name", "active", "deny"),
    [
        ("nft_empty.json", False, False),
        ("nft_debian_default_accept.json", False, False),
        ("nft_inet_policy_drop.json", True, True),
        ("nft_firewalld_reject.json", True, True),
        # Drops IPv4 only: IPv6 inbound is still open.
        ("nft_ipv4_only_drop.json", True, False),
    ],
)
def test_nft_rulesets(name: str, active: bool, deny: bool) -> None:
    ruleset = parse_nft(saved(name))
    assert (ruleset.active, ruleset.default_inbound_deny) == (active, deny)


def test_firewalld_chain_ends_in_an_unconditional_reject() -> None:
    (chain,) = parse_nft(saved("nft_firewalld_reject.json")).input_chains
    assert (chain.table, chain.name, chain.policy, chain.ends_in_drop) == (
        "firewalld",
        "filter_INPUT",
        "accept",
        True,
    )


def test_nft_text_output_is_refused() -> None:
    with pytest.raises(UnparsableOutput):
        parse_nft("table inet filter {\n}\n")


async def test_active_ufw_answers_without_asking_nft() -> None:
    runner = FakeRunner({UFW_ARGV: saved("ufw_active.txt")})
    facts = await firewall(runner)
    assert facts["firewall.active"].status is FactStatus.PASS
    deny = facts["firewall.default_inbound_deny"]
    assert (deny.status, deny.value, deny.detail) == (
        FactStatus.PASS,
        True,
        "ufw default incoming policy: deny",
    )
    assert runner.calls == [UFW_ARGV]


async def test_inactive_ufw_falls_through_to_nftables() -> None:
    runner = FakeRunner({UFW_ARGV: saved("ufw_inactive.txt"), NFT_ARGV: saved("nft_firewalld_reject.json")})
    facts = await firewall(runner)
    assert facts["firewall.active"].status is FactStatus.PASS
    assert facts["firewall.active"].source == "nft"
    assert facts["firewall.default_inbound_deny"].status is FactStatus.PASS


async def test_accept_all_ruleset_fails_both() -> None:
    runner = FakeRunner({NFT_ARGV: saved("nft_debian_default_accept.json")})
    facts = await firewall(runner)
    assert facts["firewall.active"].status is FactStatus.FAIL
    assert facts["firewall.active"].detail == ("input chains: inet filter input (policy accept, 0 rules)")
    assert facts["firewall.default_inbound_deny"].value is False


async def test_not_root_is_unknown_never_a_pass() -> None:
    runner = FakeRunner(
        {
            UFW_ARGV: CommandResult(1, "", saved("ufw_not_root_stderr.txt")),
            NFT_ARGV: CommandResult(1, "", saved("nft_not_root_stderr.txt")),
        }
    )
    facts = await firewall(runner)
    for fact in facts.values():
        assert fact.status is FactStatus.UNKNOWN and fact.value is None
    assert facts["firewall.active"].detail == (
        "ufw exited with status 1 (insufficient privileges): "
        "ERROR: You need to be root to run this script; "
        "nft exited with status 1 (insufficient privileges): "
        "netlink: Error: cache initialization failed: Operation not permitted"
    )


async def test_no_firewall_tools_at_all_is_unknown() -> None:
    facts = await firewall(FakeRunner())
    assert facts["firewall.active"].status is FactStatus.UNKNOWN
    assert facts["firewall.active"].detail == "ufw is not installed; nft is not installed"
