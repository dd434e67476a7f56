"""The clinician's side of record access, as the laptop does it (``clinic_client.records``).

A grant comes from ``POST /api/v1/records/grants`` with the laptop's posture token and a
proof; every use of it carries ``X-Record-Grant`` and a fresh request proof signed by the
same device key, bound to the grant's ``jti`` (docs in ``records/router.py``). This adapter
keeps the demo's error type: a refusal is :class:`~server.demo.api.ApiRefused`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic_client.posture import PostureAgent
from clinic_client.records import GRANT_HEADER, PROOF_HEADER, Grant, RecordsClient, RecordsError
from server.demo.api import Api, ApiRefused

__all__ = ["GRANT_HEADER", "PROOF_HEADER", "Grant", "RecordAccess"]

T = TypeVar("T")


class RecordAccess:
    """A clinician signed in on a compliant laptop, reading and writing one patient's record."""

    def __init__(self, api: Api, *, access_token: str, agent: PostureAgent, key: Ed25519PrivateKey) -> None:
        self.api = api
        self.records = RecordsClient(
            server_url=api.base_url, access_token=access_token, posture=agent, private_key=key, http=api.http
        )

    async def _call(self, what: str, path: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except RecordsError as exc:
            raise ApiRefused(
                method=what, path=path, status=exc.status or 0, code=exc.code, detail=exc.detail
            ) from None

    async def grant(self, consultation_id: str) -> Grant:
        """Ask for a grant for the live consultation this clinician hosts."""
        return await self._call("POST", "/api/v1/records/grants", self.records.grant(consultation_id))

    def headers(self, method: str, path: str, grant: Grant) -> dict[str, str]:
        """Access token, grant, and a fresh proof by the device key bound to the grant."""
        return self.records.headers(method, self.api.url(path), grant)

    async def read_document(self, document_id: str, grant: Grant) -> bytes:
        """The decrypted content of a document of the grant's patient."""
        path = f"/api/v1/records/documents/{document_id}/content"
        return await self._call("GET", path, self.records.read_document(grant, document_id))

    async def write_note(self, grant: Grant, text: str) -> dict[str, Any]:
        """Write a consultation note for the grant's patient."""
        return await self._call("POST", "/api/v1/records/notes", self.records.write_note(grant, text))
