"""FHIR R4 AuditEvent export, checked against the R4 resource models of fhirclient."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhirclient.models.auditevent import AuditEvent
from fhirclient.models.bundle import Bundle
from fhirclient.models.fhirabstractbase import FHIRValidationError

from records.audit.chain import GENESIS_HASH, AuditEntry, chain_entry
from records.audit.fhir import FhirSystems, fhir_action, to_fhir_audit_event, to_fhir_bundle

PATIENT = "A1234BC"
SYSTEMS = FhirSystems(base="https://telemed.example.org/fhir")


def entry(**overrides: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "seq": 42,
        "ts": "2025-03-01T09:30:00.250000Z",
        "actor_id": "user-7",
        "actor_role": "clinician",
        "authority_jti": "3f1c9a",
        "patient_id": PATIENT,
        "data": {"document_ids": ["doc-1", "doc-2"], "description": "discharge letters"},
        "action": "document.read",
        "outcome": "allowed",
        "purpose_of_use": "TREAT",
        "device_id": "laptop-3",
        "ip": "10.20.30.40",
        "establishment": "HMP Example",
        "request_id": "req-abc",
        "consultation_id": "cons-9",
    }
    values.update(overrides)
    return chain_entry(GENESIS_HASH, values)


def fhir(e: AuditEntry) -> dict[str, Any]:
    resource = to_fhir_audit_event(e, systems=SYSTEMS)
    # Strict R4 parsing: unknown elements, wrong types or missing required ones raise.
    parsed = AuditEvent(json.loads(json.dumps(resource)), strict=True)
    assert parsed.as_json() == resource
    return resource


def codes(codings: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in codings}


def test_allowed_document_read() -> None:
    e = entry()
    event = fhir(e)

    assert event["resourceType"] == "AuditEvent"
    assert event["type"] == {
        "system": "http://dicom.nema.org/resources/ontology/DCM",
        "code": "110110",
        "display": "Patient Record",
    }
    assert codes(event["subtype"]) == {
        ("https://telemed.example.org/fhir/CodeSystem/audit-action", "document.read")
    }
    assert event["action"] == "R"
    assert event["recorded"] == "2025-03-01T09:30:00.250000Z"
    assert event["outcome"] == "0"
    assert event["purposeOfEvent"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "code": "TREAT",
        "display": "treatment",
    }

    user, device = event["agent"]
    assert user["requestor"] is True
    assert user["who"] == {
        "identifier": {"system": "https://telemed.example.org/fhir/sid/user", "value": "user-7"}
    }
    assert user["role"][0]["text"] == "clinician"
    assert user["policy"] == ["urn:ietf:params:oauth:jti:3f1c9a"]
    assert user["network"] == {"address": "10.20.30.40", "type": "2"}
    assert device["requestor"] is False
    assert device["who"]["type"] == "Device"
    assert device["who"]["identifier"]["value"] == "laptop-3"

    assert event["source"]["site"] == "HMP Example"
    assert event["source"]["observer"] == {
        "identifier": {
            "system": "https://telemed.example.org/fhir/sid/establishment",
            "value": "HMP Example",
        },
        "type": "Organization",
    }

    patient, doc1, doc2, encounter, request, chain = event["entity"]
    assert patient["what"] == {
        "identifier": {"system": "https://telemed.example.org/fhir/sid/patient", "value": PATIENT},
        "type": "Patient",
    }
    assert (patient["type"]["code"], patient["role"]["code"]) == ("1", "1")
    assert [d["what"]["identifier"]["value"] for d in (doc1, doc2)] == ["doc-1", "doc-2"]
    assert doc1["what"]["type"] == "DocumentReference"
    assert encounter["what"]["type"] == "Encounter"
    assert request["type"]["code"] == "XrequestId"
    assert request["what"]["identifier"]["value"] == "req-abc"
    assert chain["description"] == "discharge letters"
    assert {"type": "entry_hash", "valueString": e.entry_hash} in chain["detail"]
    assert {"type": "seq", "valueString": "42"} in chain["detail"]


def test_patient_is_referenced_by_identifier_only() -> None:
    event = fhir(entry())
    text = json.dumps(event)

    # The id appears once, as an identifier value; no reference string, no name.
    assert text.count(PATIENT) == 1
    assert '"reference"' not in text


def test_denied_grant() -> None:
    event = fhir(
        entry(
            action="grant.deny",
            outcome="denied",
            data={},
            detail={"reason": "consultation_not_live", "state": "ended"},
        )
    )

    assert event["outcome"] == "4"
    assert event["outcomeDesc"] == "consultation_not_live"
    assert event["action"] == "E"
    assert event["type"]["code"] == "110100"
    chain = event["entity"][-1]
    assert {"type": "detail.state", "valueString": "ended"} in chain["detail"]


def test_failure_outcome_is_serious_failure() -> None:
    assert fhir(entry(outcome="failure"))["outcome"] == "8"


def test_break_glass() -> None:
    event = fhir(
        entry(
            action="breakglass.open",
            purpose_of_use="ETREAT",
            data={},
            detail={"reason": "unresponsive, allergy history needed"},
        )
    )

    assert event["type"]["code"] == "110113"
    assert ("http://dicom.nema.org/resources/ontology/DCM", "110127") in codes(event["subtype"])
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert event["agent"][0]["purposeOfUse"][0]["coding"][0]["code"] == "ETREAT"
    assert event["outcome"] == "0"
    assert "outcomeDesc" not in event  # a reason, not a failure


def test_room_endpoint_actor_and_machine_name_address() -> None:
    event = fhir(
        entry(
            actor_id="room-5",
            actor_role="room_endpoint",
            authority_jti=None,
            patient_id=None,
            data={},
            action="consultation.admitted",
            outcome="success",
            ip="testclient",
        )
    )

    actor = event["agent"][0]
    assert actor["type"]["coding"][0]["code"] == "DEV"
    assert actor["who"]["type"] == "Device"
    assert "policy" not in actor
    assert actor["network"] == {"address": "testclient", "type": "1"}
    assert all(e.get("what", {}).get("type") != "Patient" for e in event["entity"])


def test_anonymous_actor_without_establishment() -> None:
    event = fhir(
        entry(actor_id=None, actor_role=None, establishment=None, action="device.check", outcome="denied")
    )

    assert "who" not in event["agent"][0]
    assert event["source"]["observer"] == {"display": "telemed"}
    assert event["type"]["code"] == "110114"


@pytest.mark.parametrize(
    "action, code",
    [
        ("document.read", "R"),
        ("document.download", "R"),
        ("document.upload", "C"),
        ("grant.issue", "C"),
        ("grant.renew", "U"),
        ("document.share", "U"),
        ("grant.revoke", "D"),
        ("document.delete", "D"),
        ("document.list", "E"),
        ("device.check", "E"),
        ("consultation.admitted", "E"),
    ],
)
def test_action_codes(action: str, code: str) -> None:
    assert fhir_action(action) == code


def test_searchset_bundle() -> None:
    entries = [entry(seq=i, request_id=f"req-{i}") for i in (1, 2, 3)]

    bundle = to_fhir_bundle(entries, systems=SYSTEMS, base_url="https://telemed.example.org/fhir/")

    Bundle(json.loads(json.dumps(bundle)), strict=True)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 3
    assert [item["fullUrl"] for item in bundle["entry"]] == [
        f"https://telemed.example.org/fhir/AuditEvent/{i}" for i in (1, 2, 3)
    ]
    assert all(item["search"] == {"mode": "match"} for item in bundle["entry"])
    assert [item["resource"]["id"] for item in bundle["entry"]] == ["1", "2", "3"]


def test_collection_bundle() -> None:
    bundle = to_fhir_bundle([entry()], bundle_type="collection")

    Bundle(json.loads(json.dumps(bundle)), strict=True)
    assert bundle["type"] == "collection"
    assert "total" not in bundle
    assert "search" not in bundle["entry"][0] and "fullUrl" not in bundle["entry"][0]


def test_the_validator_used_here_does_reject_bad_shapes() -> None:
    event = to_fhir_audit_event(entry())
    del event["source"]

    with pytest.raises(FHIRValidationError):
        AuditEvent(event, strict=True)
