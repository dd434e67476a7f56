"""Posture collectors for Windows laptops (BitLocker, Defender Firewall, netsh mbn)."""

from __future__ import annotations

from device_policy.collectors.gather import Job, gather_facts
from device_policy.collectors.names import (
    BOOT_SECURE_BOOT,
    DISK_ROOT_ENCRYPTED,
    DISK_SWAP_ENCRYPTED,
    FIREWALL_ACTIVE,
    FIREWALL_DEFAULT_INBOUND_DENY,
    MODEM_ENABLED_LOCKS,
    MODEM_IMEI,
    MODEM_PRESENT,
    MODEM_UNLOCK_REQUIRED,
    OS_ID,
    OS_PENDING_SECURITY_UPDATES,
    OS_VERSION,
    SCREEN_LOCK_ENABLED,
    SCREEN_LOCK_IDLE_DELAY_S,
    SIM_ICCID,
    SIM_IMSI,
    USB_MASS_STORAGE_BLOCKED,
)
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.windows.bitlocker import collect_bitlocker
from device_policy.collectors.windows.firewall import collect_firewall
from device_policy.collectors.windows.modem import collect_modem
from device_policy.collectors.windows.osinfo import collect_os
from device_policy.collectors.windows.screenlock import collect_screen_lock
from device_policy.collectors.windows.secureboot import collect_secure_boot
from device_policy.collectors.windows.usb import collect_usb_storage
from device_policy.facts import FactSet

__all__ = ["collect_windows"]


async def collect_windows(runner: CommandRunner, *, system_drive: str = "C:") -> FactSet:
    """Collect every posture fact on a Windows machine (``system_drive`` is %SystemDrive%)."""
    return await gather_facts(
        [
            Job(
                "bitlocker",
                (DISK_ROOT_ENCRYPTED, DISK_SWAP_ENCRYPTED),
                collect_bitlocker(runner, system_drive=system_drive),
            ),
            Job("secure boot", (BOOT_SECURE_BOOT,), collect_secure_boot(runner)),
            Job(
                "firewall",
                (FIREWALL_ACTIVE, FIREWALL_DEFAULT_INBOUND_DENY),
                collect_firewall(runner),
            ),
            Job(
                "screen lock",
                (SCREEN_LOCK_ENABLED, SCREEN_LOCK_IDLE_DELAY_S),
                collect_screen_lock(runner),
            ),
            Job("usb", (USB_MASS_STORAGE_BLOCKED,), collect_usb_storage(runner)),
            Job("os", (OS_ID, OS_VERSION, OS_PENDING_SECURITY_UPDATES), collect_os(runner)),
            Job(
                "modem",
                (
                    MODEM_PRESENT,
                    MODEM_UNLOCK_REQUIRED,
                    MODEM_ENABLED_LOCKS,
                    MODEM_IMEI,
                    SIM_ICCID,
                    SIM_IMSI,
                ),
                collect_modem(runner),
            ),
        ]
    )
