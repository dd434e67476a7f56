"""The clinician's side of record access, as the laptop does it.

A grant comes from ``POST /api/v1/records/grants`` with the laptop's posture token and a
proof; every use of it carries ``X-Record-Grant`` and a fresh request proof signed by the
same device key, bound to the grant's ``jti`` (docs in ``records/router.py``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic_client.posture import PostureAgent
from device_policy.proof import sign_request_proof
from server.demo.api import Api, bearer

GRANT_HEADER = "X-Record-Grant"
PROOF_HEADER = "X-Posture-Proof"


@dataclass(frozen=True)
class Grant:
    """A record grant the laptop holds (the token never leaves this object's repr)."""

    token: str = field(repr=False)
    jti: str
    expires_at: datetime
    scope: str
    patient_id: str
    consultation_id: str | None


class RecordAccess:
    """A clinician signed in on a compliant laptop, reading and writing one patient's record."""

    def __init__(self, api: Api, *, access_token: str, agent: PostureAgent, key: Ed25519PrivateKey) -> None:
        self.api = api
        self._access = access_token
        self._agent = agent
        self._key = key

    async def grant(self, consultation_id: str) -> Grant:
        """Ask for a grant for the live consultation this clinician hosts."""
        path = "/api/v1/records/grants"
        if self._agent.current is None or self._agent.current.expires_in().total_seconds() < 60:
            await self._agent.attest()
        headers = {**bearer(self._access), **self._agent.request_headers("POST", self.api.url(path))}
        body = await self.api.json("POST", path, json={"consultation_id": consultation_id}, headers=headers)
        return Grant(
            token=str(body["grant"]),
            jti=str(body["jti"]),
            expires_at=datetime.fromisoformat(str(body["expires_at"])),
            scope=str(body["scope"]),
            patient_id=str(body["patient_id"]),
            consultation_id=body.get("consultation_id"),
        )

    def headers(self, method: str, path: str, grant: Grant) -> dict[str, str]:
        """Access token, grant, and a fresh proof by the device key bound to the grant."""
        proof = sign_request_proof(
            self._key,
            method=method,
            url=self.api.url(path),
            token_jti=grant.jti,
            iat=datetime.now(UTC),
            nonce=secrets.token_urlsafe(16),
        )
        return {**bearer(self._access), GRANT_HEADER: grant.token, PROOF_HEADER: proof}

    async def read_document(self, document_id: str, grant: Grant) -> bytes:
        """The decrypted content of a document of the grant's patient."""
        path = f"/api/v1/records/documents/{document_id}/content"
        response = await self.api.send("GET", path, headers=self.headers("GET", path, grant))
        return response.content

    async def write_note(self, grant: Grant, text: str) -> dict[str, Any]:
        """Write a consultation note for the grant's patient."""
        path = "/api/v1/records/notes"
        return await self.api.json(
            "POST", path, json={"text": text}, headers=self.headers("POST", path, grant)
        )
