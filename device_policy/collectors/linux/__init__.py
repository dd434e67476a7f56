"""Posture collectors for Linux laptops (Debian family, GNOME, ModemManager)."""

from __future__ import annotations

from device_policy.collectors.files import FileReader
from device_policy.collectors.gather import Job, gather_facts
from device_policy.collectors.linux.disk import collect_disk
from device_policy.collectors.linux.firewall import collect_firewall
from device_policy.collectors.linux.modem import collect_modem
from device_policy.collectors.linux.osrelease import collect_os_release
from device_policy.collectors.linux.screenlock import collect_screen_lock
from device_policy.collectors.linux.secureboot import collect_secure_boot
from device_policy.collectors.linux.updates import collect_security_updates
from device_policy.collectors.linux.usb import collect_usb_storage
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
from device_policy.facts import FactSet

__all__ = ["collect_linux"]


async def collect_linux(runner: CommandRunner, files: FileReader) -> FactSet:
    """Collect every posture fact on a Linux machine."""
    return await gather_facts(
        [
            Job("disk", (DISK_ROOT_ENCRYPTED, DISK_SWAP_ENCRYPTED), collect_disk(runner, files)),
            Job("secure boot", (BOOT_SECURE_BOOT,), collect_secure_boot(runner, files)),
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
            Job("usb", (USB_MASS_STORAGE_BLOCKED,), collect_usb_storage(runner, files)),
            Job("os release", (OS_ID, OS_VERSION), collect_os_release(files)),
            Job("updates", (OS_PENDING_SECURITY_UPDATES,), collect_security_updates(runner)),
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
