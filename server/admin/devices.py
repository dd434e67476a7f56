"""Devices for the console: each with its last posture check, and enrolment from pasted text.

Enrolment and revocation are ``server.devices.enrolment``; checks are ``server.devices.checks``.
What is added here is reading what ``telemed-device enrol`` printed on the device — its
``telemed device enrol …`` line, or the table above it — into the enrolment fields.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from device_policy.policy import Policy
from device_policy.policy.model import Rule
from device_policy.policy.remediation import display, render
from server.admin.errors import EnrolmentTextInvalid
from server.devices.checks import list_checks
from server.devices.enrolment import list_devices
from server.devices.models import Device, DeviceCheck, DeviceKind

# The options of `telemed device enrol` and the fields they fill.
_OPTIONS = {
    "--kind": "kind",
    "--public-key": "public_key",
    "--serial": "serial",
    "--model": "model",
    "--type-approval": "type_approval",
    "--establishment": "establishment",
    "--display-name": "display_name",
    "--imei": "imei",
    "--iccid": "iccid",
    "--imsi": "imsi",
}
# Rows of the table `telemed-device enrol` prints above the line.
_TABLE = {
    "device id": "id",
    "kind": "kind",
    "public key": "public_key",
    "serial": "serial",
    "model": "model",
    "imei": "imei",
    "iccid": "iccid",
    "imsi": "imsi",
}
_PLACEHOLDER = re.compile(r"^<[^>]*>$")
_NOT_READABLE = "(not readable here)"
MAX_TEXT = 8000


@dataclass(frozen=True)
class DeviceWithCheck:
    """An enrolled device and its most recent posture check (if any)."""

    device: Device
    last_check: DeviceCheck | None


def devices_with_last_check(*, session: Session) -> list[DeviceWithCheck]:
    """Every enrolled device, by id, with its latest posture check."""
    return [
        DeviceWithCheck(
            device=d, last_check=next(iter(list_checks(session=session, device_id=d.id, limit=1)), None)
        )
        for d in list_devices(session=session)
    ]


def rule_details(policy: Policy, rule_ids: list[str]) -> list[dict[str, str]]:
    """Title and remediation of each rule id, from the policy in force (id alone if it has gone)."""
    rules = {rule.id: rule for rule in policy.rules}
    out: list[dict[str, str]] = []
    for rule_id in rule_ids:
        rule = rules.get(rule_id)
        out.append(
            {
                "id": rule_id,
                "title": rule.title if rule else rule_id,
                "remediation": _remediation(rule) if rule else "",
            }
        )
    return out


_ACTUAL_ASIDE = re.compile(r"\s*\([^()]*\{actual\}[^()]*\)")


def _remediation(rule: Rule) -> str:
    """The rule's remediation text, filled in as far as a stored check allows."""
    # {actual} is the value the device reported, which checks do not keep: drop the aside
    # that names it ("(currently enabled locks: {actual})").
    template = _ACTUAL_ASIDE.sub("", rule.remediation)
    values = {"expected": display(rule.operand), "fact": rule.fact, "rule_id": rule.id, "title": rule.title}
    return render(template, values).replace("{actual}", "the value the device reported")


def _clean(value: str) -> str | None:
    value = value.strip()
    if not value or _PLACEHOLDER.match(value) or value == _NOT_READABLE:
        return None
    return value


def _from_line(line: str) -> dict[str, Any]:
    try:
        words = shlex.split(line)
    except ValueError:
        raise EnrolmentTextInvalid("The enrol line has an unbalanced quote") from None
    # "telemed device enrol <id> --option value …"
    words = words[3:]
    fields: dict[str, Any] = {}
    if words and not words[0].startswith("--"):
        fields["id"] = _clean(words.pop(0))
    while words:
        option = words.pop(0)
        name = _OPTIONS.get(option.split("=", 1)[0])
        if name is None:
            raise EnrolmentTextInvalid("The enrol line has an option this server does not know")
        if "=" in option:
            value = option.split("=", 1)[1]
        elif words:
            value = words.pop(0)
        else:
            raise EnrolmentTextInvalid("The enrol line ends without a value")
        fields[name] = _clean(value)
    return fields


def _from_table(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for raw in text.splitlines():
        line = raw.strip()
        for label, name in _TABLE.items():
            if line.lower().startswith(label + " ") or line.lower().startswith(label + "\t"):
                fields.setdefault(name, _clean(line[len(label) :]))
    return fields


def parse_enrolment_text(text: str) -> dict[str, Any]:
    """The enrolment fields in what ``telemed-device enrol`` printed (the line wins over the table)."""
    if len(text) > MAX_TEXT:
        raise EnrolmentTextInvalid("That is more than telemed-device enrol prints; paste only its output")
    fields = _from_table(text)
    line = next(
        (ln.strip() for ln in text.splitlines() if ln.strip().startswith("telemed device enrol")), None
    )
    if line is not None:
        fields.update({k: v for k, v in _from_line(line).items() if v is not None or k not in fields})
    fields = {k: v for k, v in fields.items() if v is not None}
    if "public_key" not in fields or "id" not in fields:
        raise EnrolmentTextInvalid(
            "No device id and public key found: paste everything telemed-device enrol printed"
        )
    kind = fields.get("kind")
    if kind is not None and kind not in {k.value for k in DeviceKind}:
        raise EnrolmentTextInvalid("The kind must be prison_laptop or room_endpoint")
    return fields
