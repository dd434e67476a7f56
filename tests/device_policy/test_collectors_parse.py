"""The parse entry point behind `telemed-device parse KIND FILE`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_policy.collectors import (
    UnknownCollector,
    UnparsableOutput,
    describe_kinds,
    list_kinds,
    parse,
)

FIXTURES = Path(__file__).parent / "fixtures"


def saved(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_the_required_kinds_are_offered() -> None:
    kinds = list_kinds()
    assert kinds == sorted(kinds)
    for kind in (
        "mmcli-modem",
        "mmcli-sim",
        "netsh-mbn-interfaces",
        "netsh-mbn-readyinfo",
        "manage-bde",
        "lsblk",
        "mokutil",
        "ufw",
        "nft",
        "gsettings-value",
        "os-release",
        "apt-upgrade",
        "netsh-firewall",
        "netsh-mbn-pin",
    ):
        assert kind in kinds
    assert set(describe_kinds()) == set(kinds)


def test_mmcli_modem_keys() -> None:
    out = parse("mmcli-modem", saved("linux/mmcli_modem_dual_slot.txt"))
    assert out["unlock_required"] == "none"
    assert out["enabled_locks"] == ["sim"]
    assert out["imei"] == "490154203237518"
    assert out["sim_slots"] == ["/org/freedesktop/ModemManager1/SIM/1", None]


def test_mmcli_sim_keys() -> None:
    out = parse("mmcli-sim", saved("linux/mmcli_sim.txt"))
    assert (out["iccid"], out["imsi"], out["active"]) == (
        "8944100000000000017",
        "234150999999999",
        True,
    )


def test_netsh_readyinfo_from_a_utf16_file() -> None:
    out = parse("netsh-mbn-readyinfo", saved("windows/netsh_mbn_readyinfo_utf16.txt"))
    assert out == {
        "ready_state": "Ready to power up and register",
        "imsi": "234150999999999",
        "iccid": "8944100000000000017",
        "emergency_mode": "Off",
    }


def test_netsh_interfaces_keys() -> None:
    out = parse("netsh-mbn-interfaces", saved("windows/netsh_mbn_interfaces.txt"))
    assert out["service_running"] is True
    interfaces = out["interfaces"]
    assert isinstance(interfaces, list)
    (interface,) = interfaces
    assert interface["device_id"] == "490154203237518"


def test_manage_bde_keys() -> None:
    out = parse("manage-bde", saved("windows/manage_bde_on.txt"))
    volumes = out["volumes"]
    assert isinstance(volumes, list)
    (volume,) = volumes
    assert {k: volume[k] for k in ("volume", "protection", "fully_encrypted", "percentage_encrypted")} == {
        "volume": "C:",
        "protection": "on",
        "fully_encrypted": True,
        "percentage_encrypted": 100.0,
    }


def test_verdict_properties_are_included() -> None:
    assert parse("nft", saved("linux/nft_ipv4_only_drop.json"))["default_inbound_deny"] is False
    assert parse("mokutil", saved("linux/mokutil_shim_validation_disabled.txt"))["enforced"] is False
    assert parse("netsh-firewall", saved("windows/netsh_firewall_allprofiles.txt"))["active"] is True
    assert parse("netsh-mbn-pinlist", saved("windows/netsh_mbn_pinlist.txt"))["sim_pin_enabled"] is True


@pytest.mark.parametrize(
    ("kind", "fixture"),
    [
        ("lsblk", "linux/lsblk_luks_lvm.json"),
        ("proc-swaps", "linux/proc_swaps_zram_file.txt"),
        ("mokutil", "linux/mokutil_enabled.txt"),
        ("ufw", "linux/ufw_active.txt"),
        ("nft", "linux/nft_firewalld_reject.json"),
        ("gsettings-value", "linux/gsettings_idle_delay_300.txt"),
        ("modprobe-conf", "linux/modprobe_cis_usb_storage.conf"),
        ("os-release", "linux/os_release_debian12.txt"),
        ("apt-upgrade", "linux/apt_get_s_dist_upgrade_debian12.txt"),
        ("mmcli-modem-list", "linux/mmcli_list_two.txt"),
        ("mmcli-modem", "linux/mmcli_modem_waiting_for_pin.txt"),
        ("mmcli-sim", "linux/mmcli_sim_locked.txt"),
        ("manage-bde", "windows/manage_bde_de_utf16.txt"),
        ("confirm-securebootuefi", "windows/confirm_securebootuefi_true.txt"),
        ("netsh-firewall", "windows/netsh_firewall_state_public_off.txt"),
        ("reg-query", "windows/reg_currentversion.txt"),
        ("netsh-mbn-interfaces", "windows/netsh_mbn_interfaces_none.txt"),
        ("netsh-mbn-readyinfo", "windows/netsh_mbn_readyinfo_no_sim.txt"),
        ("netsh-mbn-pin", "windows/netsh_mbn_pin_required.txt"),
        ("netsh-mbn-pinlist", "windows/netsh_mbn_pinlist_pin_disabled.txt"),
    ],
)
def test_every_kind_gives_json_for_its_fixture(kind: str, fixture: str) -> None:
    out = parse(kind, saved(fixture))
    assert isinstance(out, dict) and out
    assert json.loads(json.dumps(out)) == out  # plain JSON values only


def test_text_and_bytes_give_the_same_answer() -> None:
    raw = saved("windows/netsh_mbn_pin_required.txt")
    assert parse("netsh-mbn-pin", raw) == parse("netsh-mbn-pin", raw.decode("utf-8"))


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(UnknownCollector) as caught:
        parse("mmcli-bearer", "bearer.dbus-path : /")
    error = caught.value
    assert (error.code, error.status, error.kind) == ("unknown_collector", 400, "mmcli-bearer")
    assert str(error).startswith('No collector parses kind "mmcli-bearer"; known kinds: apt-upgrade, ')


def test_output_of_the_wrong_tool_is_an_unparsable_error() -> None:
    with pytest.raises(UnparsableOutput) as caught:
        parse("manage-bde", saved("windows/netsh_mbn_readyinfo.txt"))
    assert (caught.value.code, caught.value.status) == ("unparsable_output", 422)
    assert str(caught.value) == "Cannot parse manage-bde output: no volume listed"
