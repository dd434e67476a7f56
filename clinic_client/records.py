"""Read and write a patient's record from a prison laptop, under a record grant.

A grant is what the telemed server gives the host of a **live** consultation on a compliant
laptop: ``POST /api/v1/records/grants`` with the access token, the laptop's posture token and
a request proof. The grant is bound to the laptop's device key; every use carries the grant in
``X-Record-Grant`` and a fresh request proof, signed by that key, bound to the grant's ``jti``.
It lives five minutes (never past the consultation's end): renew it with
:meth:`RecordsClient.renew` while the consultation is live. When the consultation ends the
server revokes it; any use then answers ``401 grant_revoked``.

Example — read the record during the live consultation and write the note::

    import asyncio
    from clinic_client.posture import PostureAgent
    from clinic_client.records import RecordsClient, RecordsRefused

    async def main() -> None:
        records = RecordsClient(server_url=url, access_token=access, posture=agent, private_key=key)
        grant = await records.grant(consultation_id)            # 409 consultation_not_live before live
        patient = await records.patient(grant)
        for document in await records.documents(grant):
            content = await records.read_document(grant, document["id"])
        note = await records.write_note(grant, "Reviewed the wound; dressing changed.")
        note = await records.add_note_version(grant, note["id"], "…amended", base_version=1)
        await records.aclose()

    asyncio.run(main())

Errors: :class:`RecordsRefused` carries the server's problem ``code`` and HTTP ``status``
(``grant_revoked``, ``consultation_not_live``, ``version_conflict``, ``not_found``…);
:class:`RecordsUnreachable` means no answer at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_policy.proof import sign_request_proof

__all__ = [
    "GRANT_HEADER",
    "PROOF_HEADER",
    "Grant",
    "PostureHeaders",
    "RecordsClient",
    "RecordsError",
    "RecordsRefused",
    "RecordsUnreachable",
]

GRANT_HEADER = "X-Record-Grant"
PROOF_HEADER = "X-Posture-Proof"
DEFAULT_TIMEOUT_S = 30.0
# A posture token this close to its expiry is renewed before asking for a grant.
_POSTURE_MARGIN = timedelta(seconds=60)


class RecordsError(Exception):
    """Base of the records client's errors; ``code`` is stable, ``detail`` is for people.

    ::

        RecordsError
        ├── RecordsUnreachable   server_unreachable   no answer (network, DNS, TLS, timeout)
        └── RecordsRefused       <server's code>      the server refused (grant_revoked, …)
    """

    code = "records_error"

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.status = status


class RecordsUnreachable(RecordsError):
    """The server could not be reached, or answered with something that is not its API."""

    code = "server_unreachable"


class RecordsRefused(RecordsError):
    """The server refused the request; ``code`` and ``status`` are its problem's."""

    code = "refused"


@dataclass(frozen=True)
class Grant:
    """A record grant this laptop holds; the token never appears in its repr.

    Example::

        grant.expires_in() < timedelta(minutes=1)     # time to renew
    """

    token: str = field(repr=False)
    jti: str
    expires_at: datetime
    scope: str
    purpose: str
    patient_id: str
    consultation_id: str | None

    def expires_in(self, now: datetime | None = None) -> timedelta:
        """Time left before the grant lapses (negative once it has)."""
        return self.expires_at - (now or datetime.now(UTC))

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> Grant:
        """Read the server's grant response (``POST /records/grants`` or ``/renew``)."""
        try:
            return cls(
                token=str(body["grant"]),
                jti=str(body["jti"]),
                expires_at=datetime.fromisoformat(str(body["expires_at"])),
                scope=str(body["scope"]),
                purpose=str(body.get("purpose", "")),
                patient_id=str(body["patient_id"]),
                consultation_id=body.get("consultation_id"),
            )
        except (KeyError, ValueError, TypeError):
            raise RecordsUnreachable("The grant response is missing fields") from None


class PostureHeaders(Protocol):
    """What the client needs from the posture agent (:class:`clinic_client.posture.PostureAgent`)."""

    @property
    def current(self) -> Any:
        """The latest posture result (with ``expires_at``), or None."""
        ...

    async def attest(self) -> Any:
        """Attest now; the new posture result."""
        ...

    def request_headers(self, method: str, url: str) -> dict[str, str]:
        """``X-Posture-Token`` and a fresh ``X-Posture-Proof`` for one request."""
        ...


class RecordsClient:
    """A signed-in clinician's record calls from a laptop (see the module docstring).

    ``access_token`` is the bearer token, or a function returning the current one (for a
    caller that refreshes it). ``http`` may be any ``httpx.AsyncClient``; the client closes
    only one it created itself.

    Example::

        records = RecordsClient(server_url="https://telemed.example.org", access_token=access,
                                posture=agent, private_key=load_private_key(key_file))
        grant = await records.grant("c0ffee…")
    """

    def __init__(
        self,
        *,
        server_url: str,
        access_token: str | Callable[[], str],
        posture: PostureHeaders,
        private_key: Ed25519PrivateKey,
        http: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self._access = access_token
        self._posture = posture
        self._key = private_key
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_http:
            await self._http.aclose()

    def url(self, path: str) -> str:
        """The absolute URL of an API path (what request proofs are signed over)."""
        return f"{self.server_url}{path}"

    def _bearer(self) -> dict[str, str]:
        token = self._access() if callable(self._access) else self._access
        return {"Authorization": f"Bearer {token}"}

    # --- grants ----------------------------------------------------------------------------

    async def _posture_headers(self, method: str, url: str) -> dict[str, str]:
        current = self._posture.current
        if current is None or current.expires_at - datetime.now(UTC) < _POSTURE_MARGIN:
            await self._posture.attest()
        return self._posture.request_headers(method, url)

    async def grant(self, consultation_id: str) -> Grant:
        """A grant for the live consultation this clinician hosts (attests first if needed).

        Example::

            try:
                grant = await records.grant(consultation_id)
            except RecordsRefused as refused:
                refused.code          # "consultation_not_live", "not_host", "no_posture"…
        """
        url = self.url("/api/v1/records/grants")
        headers = {**self._bearer(), **await self._posture_headers("POST", url)}
        body = await self._json("POST", url, headers=headers, json={"consultation_id": consultation_id})
        return Grant.from_wire(body)

    async def renew(self, grant: Grant) -> Grant:
        """Swap ``grant`` for a fresh one while the consultation is still live.

        Example::

            if grant.expires_in() < timedelta(minutes=1):
                grant = await records.renew(grant)
        """
        url = self.url("/api/v1/records/grants/renew")
        headers = {**self._bearer(), **await self._posture_headers("POST", url), GRANT_HEADER: grant.token}
        return Grant.from_wire(await self._json("POST", url, headers=headers))

    def headers(self, method: str, url: str, grant: Grant) -> dict[str, str]:
        """Bearer, grant and a fresh proof by the device key bound to the grant, for ``method url``.

        Example::

            url = records.url(f"/api/v1/records/documents/{document_id}")
            await http.get(url, headers=records.headers("GET", url, grant))
        """
        proof = sign_request_proof(
            self._key,
            method=method,
            url=url,
            token_jti=grant.jti,
            iat=datetime.now(UTC),
            nonce=secrets.token_urlsafe(16),
        )
        return {**self._bearer(), GRANT_HEADER: grant.token, PROOF_HEADER: proof}

    # --- reading -----------------------------------------------------------------------------

    async def patient(self, grant: Grant) -> dict[str, Any]:
        """The grant's patient: ``id``, ``name``, ``prison_number``, ``date_of_birth``, ``establishment``.

        Example::

            (await records.patient(grant))["prison_number"]     # "A1234BC"
        """
        return await self._granted("GET", f"/api/v1/records/patients/{_q(grant.patient_id)}", grant)

    async def documents(self, grant: Grant) -> list[dict[str, Any]]:
        """The patient's documents (metadata), newest first.

        Example::

            [d["title"] for d in await records.documents(grant)]
        """
        return await self._granted_list(
            "GET", f"/api/v1/records/patients/{_q(grant.patient_id)}/documents", grant
        )

    async def notes(self, grant: Grant) -> list[dict[str, Any]]:
        """The patient's notes, each with its full version history.

        Example::

            latest = [n["versions"][-1]["text"] for n in await records.notes(grant)]
        """
        return await self._granted_list(
            "GET", f"/api/v1/records/patients/{_q(grant.patient_id)}/notes", grant
        )

    async def open_document(self, grant: Grant, document_id: str) -> httpx.Response:
        """Start streaming a document's content; the caller reads and must ``aclose()`` the response.

        The response's ``Content-Type`` is the document's. Errors are raised before any body.

        Example::

            response = await records.open_document(grant, document_id)
            try:
                async for chunk in response.aiter_bytes():
                    sink.write(chunk)
            finally:
                await response.aclose()
        """
        url = self.url(f"/api/v1/records/documents/{_q(document_id)}/content")
        request = self._http.build_request("GET", url, headers=self.headers("GET", url, grant))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _unreachable(exc) from None
        if not response.is_success:
            await response.aread()
            await response.aclose()
            raise _refusal(response)
        return response

    async def read_document(self, grant: Grant, document_id: str) -> bytes:
        """A document's whole content.

        Example::

            pdf = await records.read_document(grant, document_id)
        """
        response = await self.open_document(grant, document_id)
        try:
            return await response.aread()
        finally:
            await response.aclose()

    # --- writing -----------------------------------------------------------------------------

    async def write_note(self, grant: Grant, text: str) -> dict[str, Any]:
        """Write this consultation's note (version 1); the note with its versions.

        Example::

            note = await records.write_note(grant, "Seen with the nurse present.")
            note["latest_version"]      # 1
        """
        return await self._granted("POST", "/api/v1/records/notes", grant, json={"text": text})

    async def add_note_version(
        self, grant: Grant, note_id: str, text: str, *, base_version: int
    ) -> dict[str, Any]:
        """Save a new version of a note; ``base_version`` is the latest one you saw.

        Raises :class:`RecordsRefused` with ``version_conflict`` when someone saved after it.

        Example::

            note = await records.add_note_version(grant, note["id"], text, base_version=1)
        """
        return await self._granted(
            "POST",
            f"/api/v1/records/notes/{_q(note_id)}/versions",
            grant,
            json={"text": text, "base_version": base_version},
        )

    async def share(
        self, grant: Grant, *, consultation_id: str, document_id: str, participant_id: str
    ) -> dict[str, Any]:
        """Share one document with a specialist in this call (``participant_id`` ``specialist:…``).

        Example::

            await records.share(grant, consultation_id=cid, document_id=doc, participant_id=specialist)
        """
        return await self._granted(
            "POST",
            "/api/v1/records/shares",
            grant,
            json={
                "consultation_id": consultation_id,
                "document_id": document_id,
                "participant_id": participant_id,
            },
        )

    # --- plumbing ------------------------------------------------------------------------------

    async def _granted(self, method: str, path: str, grant: Grant, **kwargs: Any) -> dict[str, Any]:
        url = self.url(path)
        return await self._json(method, url, headers=self.headers(method, url, grant), **kwargs)

    async def _granted_list(self, method: str, path: str, grant: Grant) -> list[dict[str, Any]]:
        url = self.url(path)
        body = await self._send(method, url, headers=self.headers(method, url, grant))
        if not isinstance(body, list):
            raise RecordsUnreachable("The server did not answer a list")
        return [item for item in body if isinstance(item, dict)]

    async def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        body = await self._send(method, url, **kwargs)
        if not isinstance(body, dict):
            raise RecordsUnreachable("The server did not answer a JSON object")
        return body

    async def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(exc) from None
        if not response.is_success:
            raise _refusal(response)
        try:
            return response.json()
        except ValueError:
            raise RecordsUnreachable(
                "The server's answer was not JSON", status=response.status_code
            ) from None


def _q(value: str) -> str:
    return quote(value, safe="")


def _unreachable(exc: httpx.TransportError) -> RecordsUnreachable:
    return RecordsUnreachable(f"The telemed server could not be reached ({type(exc).__name__})")


def _refusal(response: httpx.Response) -> RecordsError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "code" not in body:
        return RecordsUnreachable(
            f"The server answered HTTP {response.status_code} without a problem code",
            status=response.status_code,
        )
    detail = str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
    return RecordsRefused(detail, code=str(body["code"]), status=response.status_code)
