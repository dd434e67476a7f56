"""The attest endpoint's body is in the OpenAPI schema, so a client can be written from it."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_attest_declares_the_signed_report_body(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/devices/{device_id}/attest"]["post"]

    body = operation["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    report = schema["properties"]["report"]
    fact = report["properties"]["facts"]["additionalProperties"]
    assert body["required"] is True
    assert schema["required"] == ["report", "signature"]
    assert set(report["required"]) == {
        "device_id",
        "nonce",
        "collected_at",
        "agent_version",
        "policy_hash",
        "platform",
        "device_kind",
        "facts",
    }
    assert fact["required"] == ["name", "status"]
    assert fact["properties"]["status"]["enum"] == ["pass", "fail", "unknown"]
    assert "$ref" not in str(schema)  # self-contained: nothing to resolve elsewhere
