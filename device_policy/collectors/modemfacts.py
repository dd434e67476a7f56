"""Modem and SIM facts from whatever a platform's tools told us, judged the same way on both.

The vocabulary is ModemManager's: ``unlock_required`` is ``none`` when the SIM is
unlocked and usable, ``sim-pin`` / ``sim-puk`` when the modem waits for a code; the
enabled facility lock ``sim`` means the SIM PIN is switched on (a "locked SIM").
"""

from __future__ import annotations

import re

from device_policy.collectors.judge import judged, unknown
from device_policy.collectors.names import (
    MODEM_ENABLED_LOCKS,
    MODEM_IMEI,
    MODEM_UNLOCK_REQUIRED,
    SIM_ICCID,
    SIM_IMSI,
    SIM_PIN_LOCK,
)
from device_policy.facts import Fact

MODEM_FACTS = (MODEM_UNLOCK_REQUIRED, MODEM_ENABLED_LOCKS, MODEM_IMEI)
SIM_FACTS = (SIM_ICCID, SIM_IMSI)
_IMEI = re.compile(r"^\d{14,16}$")


def modem_facts(
    *,
    unlock_required: str | None,
    enabled_locks: list[str] | None,
    imei: str | None,
    source: str,
    unlock_unknown: str = "lock state not reported",
    locks_unknown: str = "facility locks not reported",
) -> list[Fact]:
    """``modem.unlock_required``, ``modem.enabled_locks`` and ``modem.imei``; ``None`` is unknown."""
    facts: list[Fact] = []
    if unlock_required is None:
        facts.append(unknown(MODEM_UNLOCK_REQUIRED, unlock_unknown, source=source))
    else:
        ok = unlock_required == "none"
        detail = "SIM unlocked" if ok else f"modem waits for {unlock_required}"
        facts.append(judged(MODEM_UNLOCK_REQUIRED, unlock_required, ok, source=source, detail=detail))
    if enabled_locks is None:
        facts.append(unknown(MODEM_ENABLED_LOCKS, locks_unknown, source=source))
    else:
        ok = SIM_PIN_LOCK in enabled_locks
        detail = "SIM PIN lock enabled" if ok else "SIM PIN lock not enabled"
        facts.append(judged(MODEM_ENABLED_LOCKS, enabled_locks, ok, source=source, detail=detail))
    if imei is None:
        facts.append(unknown(MODEM_IMEI, "modem reports no IMEI", source=source))
    else:
        ok = bool(_IMEI.match(imei))
        note = None if ok else "equipment identifier is not an IMEI"
        facts.append(judged(MODEM_IMEI, imei, ok, source=source, detail=note))
    return facts


def sim_facts(iccid: str | None, imsi: str | None, *, source: str, locked: bool) -> list[Fact]:
    """``sim.iccid`` and ``sim.imsi``: passed when reported, unknown when not."""
    hint = " (the SIM is still locked)" if locked else ""
    return [
        judged(SIM_ICCID, iccid, True, source=source)
        if iccid
        else unknown(SIM_ICCID, "SIM reports no ICCID" + hint, source=source),
        judged(SIM_IMSI, imsi, True, source=source)
        if imsi
        else unknown(SIM_IMSI, "SIM reports no IMSI" + hint, source=source),
    ]
