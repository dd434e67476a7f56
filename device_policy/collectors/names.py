"""The fact names collectors produce, with the type of each value.

Policy rules are written against these names; ``docs/collectors.md`` documents them.
Every orchestrator returns every name, ``unknown`` where it could not be established.
"""

from __future__ import annotations

from typing import Final

DISK_ROOT_ENCRYPTED: Final = "disk.root_encrypted"
DISK_SWAP_ENCRYPTED: Final = "disk.swap_encrypted"
BOOT_SECURE_BOOT: Final = "boot.secure_boot"
FIREWALL_ACTIVE: Final = "firewall.active"
FIREWALL_DEFAULT_INBOUND_DENY: Final = "firewall.default_inbound_deny"
SCREEN_LOCK_ENABLED: Final = "screen_lock.enabled"
SCREEN_LOCK_IDLE_DELAY_S: Final = "screen_lock.idle_delay_s"
USB_MASS_STORAGE_BLOCKED: Final = "usb.mass_storage_blocked"
OS_ID: Final = "os.id"
OS_VERSION: Final = "os.version"
OS_PENDING_SECURITY_UPDATES: Final = "os.pending_security_updates"
MODEM_PRESENT: Final = "modem.present"
MODEM_UNLOCK_REQUIRED: Final = "modem.unlock_required"
MODEM_ENABLED_LOCKS: Final = "modem.enabled_locks"
MODEM_IMEI: Final = "modem.imei"
SIM_ICCID: Final = "sim.iccid"
SIM_IMSI: Final = "sim.imsi"

FACT_TYPES: Final[dict[str, str]] = {
    DISK_ROOT_ENCRYPTED: "bool",
    DISK_SWAP_ENCRYPTED: "bool",
    BOOT_SECURE_BOOT: "bool",
    FIREWALL_ACTIVE: "bool",
    FIREWALL_DEFAULT_INBOUND_DENY: "bool",
    SCREEN_LOCK_ENABLED: "bool",
    SCREEN_LOCK_IDLE_DELAY_S: "int",
    USB_MASS_STORAGE_BLOCKED: "bool",
    OS_ID: "str",
    OS_VERSION: "str",
    OS_PENDING_SECURITY_UPDATES: "int",
    MODEM_PRESENT: "bool",
    MODEM_UNLOCK_REQUIRED: "str",
    MODEM_ENABLED_LOCKS: "list[str]",
    MODEM_IMEI: "str",
    SIM_ICCID: "str",
    SIM_IMSI: "str",
}

FACT_NAMES: Final[tuple[str, ...]] = tuple(FACT_TYPES)

# Longest idle time, in seconds, that the collector itself still judges a working lock.
MAX_IDLE_DELAY_S: Final = 900

# The 3GPP facility name for "SIM PIN enabled", as ModemManager spells it; the Windows
# collector reports the same name so that one policy rule serves both platforms.
SIM_PIN_LOCK: Final = "sim"
