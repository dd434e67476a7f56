"""Map audit entries to FHIR R4 ``AuditEvent`` resources and ``Bundle``s.

Follows FHIR R4 (4.0.1) AuditEvent with the IHE BALP conventions where they fit: the
grant's ``jti`` goes in ``agent.policy`` as ``urn:ietf:params:oauth:jti:<jti>``, the
request id is an entity of BALP type ``XrequestId``. People and records are referenced by
identifier only, never by name. The mapping table is in ``docs/audit.md``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from records.audit.chain import AuditEntry, AuditFields, canonical_json, utc_now_ts

__all__ = ["FhirSystems", "fhir_action", "to_fhir_audit_event", "to_fhir_bundle"]

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SECURITY_ROLE_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
JTI_URN = "urn:ietf:params:oauth:jti:"

_OUTCOME = {"allowed": "0", "success": "0", "denied": "4", "failure": "8"}
_PURPOSE_DISPLAY = {
    "TREAT": "treatment",
    "ETREAT": "Emergency Treatment",
    "HOPERAT": "healthcare operations",
    "HSYSADMIN": "health system administration",
    "PATRQT": "patient requested",
}
_VERB_ACTION = {
    **dict.fromkeys(("read", "view", "download", "export"), "R"),
    **dict.fromkeys(("create", "upload", "issue", "open", "add"), "C"),
    **dict.fromkeys(("update", "renew", "share", "edit"), "U"),
    **dict.fromkeys(("delete", "revoke", "remove"), "D"),
}
_TYPES = {
    "document": ("110110", "Patient Record"),
    "breakglass": ("110113", "Security Alert"),
    "device": ("110114", "User Authentication"),
    "audit": ("110101", "Audit Log Used"),
}
_DEFAULT_TYPE = ("110100", "Application Activity")
_SYSTEM_ROLES = frozenset({"system", "service"})
_DEVICE_ROLES = frozenset({"device", "room", "room_endpoint", "prison_laptop"})
_HUMAN_TYPE = {"system": SECURITY_ROLE_TYPE, "code": "humanuser", "display": "human user"}
_DEVICE_TYPE = {"system": PARTICIPATION_TYPE, "code": "DEV", "display": "device"}


@dataclass(frozen=True)
class FhirSystems:
    """URIs for telemed's own identifiers and codes; set ``base`` to the deployment's URL."""

    base: str = "https://telemed.invalid/fhir"

    def sid(self, kind: str) -> str:
        """Identifier system for one kind of id (user, patient, device, ...)."""
        return f"{self.base}/sid/{kind}"

    def code_system(self, name: str) -> str:
        """Code system URI for telemed's own codes."""
        return f"{self.base}/CodeSystem/{name}"


def fhir_action(action: str) -> str:
    """AuditEvent.action (C/R/U/D/E) for an audit action such as ``document.read``."""
    return _VERB_ACTION.get(action.rsplit(".", 1)[-1], "E")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _ident_ref(system: str, value: str, resource_type: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"identifier": {"system": system, "value": value}}
    if resource_type:
        ref["type"] = resource_type
    return ref


def _detail_value(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value).decode("utf-8")


def _actor_agent(entry: AuditFields, names: FhirSystems) -> dict[str, Any]:
    role = entry.actor_role
    if role in _SYSTEM_ROLES:
        agent_type, who_kind, who_type = _coding(DCM, "110150", "Application"), "service", "Device"
    elif role in _DEVICE_ROLES:
        agent_type, who_kind, who_type = _DEVICE_TYPE, "device", "Device"
    else:
        agent_type, who_kind, who_type = _HUMAN_TYPE, "user", None
    agent: dict[str, Any] = {"type": {"coding": [agent_type]}}
    if role:
        agent["role"] = [{"coding": [_coding(names.code_system("actor-role"), role)], "text": role}]
    if entry.actor_id:
        agent["who"] = _ident_ref(names.sid(who_kind), entry.actor_id, who_type)
    agent["requestor"] = True
    if entry.authority_jti:
        agent["policy"] = [JTI_URN + entry.authority_jti]
    if entry.ip:
        # Network access point type 2 is an IP address, 1 a machine name.
        agent["network"] = {"address": entry.ip, "type": "2" if _is_ip(entry.ip) else "1"}
    return agent


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def to_fhir_audit_event(entry: AuditFields, *, systems: FhirSystems | None = None) -> dict[str, Any]:
    """One audit entry as a FHIR R4 AuditEvent resource (a JSON-ready dict)."""
    names = systems or FhirSystems()
    category = entry.action.split(".", 1)[0]
    type_code, type_display = _TYPES.get(category, _DEFAULT_TYPE)
    subtype = [_coding(names.code_system("audit-action"), entry.action)]
    if entry.action == "breakglass.open":
        subtype.append(_coding(DCM, "110127", "Emergency Override Started"))

    purpose = None
    if entry.purpose_of_use:
        code = entry.purpose_of_use
        purpose = [{"coding": [_coding(ACT_REASON, code, _PURPOSE_DISPLAY.get(code))]}]

    actor = _actor_agent(entry, names)
    if purpose:
        actor["purposeOfUse"] = purpose
    agents = [actor]
    if entry.device_id:
        agents.append(
            {
                "type": {"coding": [_DEVICE_TYPE]},
                "who": _ident_ref(names.sid("device"), entry.device_id, "Device"),
                "requestor": False,
            }
        )

    observer = (
        _ident_ref(names.sid("establishment"), entry.establishment, "Organization")
        if entry.establishment
        else {"display": "telemed"}
    )
    source: dict[str, Any] = {
        "observer": observer,
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }
    if entry.establishment:
        source["site"] = entry.establishment

    entities: list[dict[str, Any]] = []
    if entry.patient_id:
        entities.append(
            {
                "what": _ident_ref(names.sid("patient"), entry.patient_id, "Patient"),
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    for document_id in entry.data.document_ids:
        entities.append(
            {
                "what": _ident_ref(names.sid("document"), document_id, "DocumentReference"),
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "3", "Report"),
            }
        )
    if entry.consultation_id:
        entities.append(
            {
                "what": _ident_ref(names.sid("consultation"), entry.consultation_id, "Encounter"),
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    if entry.request_id:
        entities.append(
            {
                "what": {"identifier": {"value": entry.request_id}},
                "type": _coding(BALP_ENTITY_TYPE, "XrequestId"),
            }
        )
    # The chain entry itself, so an auditor can match this resource to the verified log.
    chain_detail = [{"type": "seq", "valueString": str(entry.seq)}]
    if isinstance(entry, AuditEntry):
        chain_detail.append({"type": "entry_hash", "valueString": entry.entry_hash})
    chain_detail += [
        {"type": f"detail.{key}", "valueString": _detail_value(value)}
        for key, value in sorted(entry.detail.items())
    ]
    chain_entity: dict[str, Any] = {
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "name": "telemed audit entry",
        "detail": chain_detail,
    }
    if entry.data.description:
        chain_entity["description"] = entry.data.description
    entities.append(chain_entity)

    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(entry.seq),
        "type": _coding(DCM, type_code, type_display),
        "subtype": subtype,
        "action": fhir_action(entry.action),
        "recorded": entry.ts,
        "outcome": _OUTCOME[entry.outcome],
    }
    reason = entry.detail.get("reason")
    if entry.outcome in ("denied", "failure") and isinstance(reason, str):
        event["outcomeDesc"] = reason
    if purpose:
        event["purposeOfEvent"] = purpose
    event["agent"] = agents
    event["source"] = source
    event["entity"] = entities
    return event


def to_fhir_bundle(
    entries: Iterable[AuditFields],
    *,
    bundle_type: Literal["searchset", "collection"] = "searchset",
    systems: FhirSystems | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """A FHIR R4 Bundle of AuditEvents; ``base_url`` (the FHIR base) adds ``fullUrl``s."""
    items: list[dict[str, Any]] = []
    for entry in entries:
        resource = to_fhir_audit_event(entry, systems=systems)
        item: dict[str, Any] = {}
        if base_url:
            item["fullUrl"] = f"{base_url.rstrip('/')}/AuditEvent/{resource['id']}"
        item["resource"] = resource
        if bundle_type == "searchset":
            item["search"] = {"mode": "match"}
        items.append(item)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": bundle_type,
        "timestamp": utc_now_ts(),
    }
    if bundle_type == "searchset":
        bundle["total"] = len(items)
    bundle["entry"] = items
    return bundle
