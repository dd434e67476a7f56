"""A ward to test record access in: users, enrolled and attested devices, patients, documents,
and a live consultation — built through the real APIs and services, not fakes."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from device_policy.proof import sign_request_proof
from server.cli import cli
from server.consultations import service as consultations
from server.consultations.models import Consultation
from server.db import session_scope, utcnow
from server.identity.models import Role
from server.services import Services
from server.settings import Settings
from tests.conftest import TEST_SECRET
from tests.server.devices.helpers import attest, enrol
from tests.server.factories import add_user, bearer, login

BASE = "http://testserver"
ESTABLISHMENT = "HMP Example"
MARKER = b"ZEBRA-PLAINTEXT-MARKER-7d1f"


runner = CliRunner()


def _cli_env(settings: Settings) -> dict[str, str]:
    return {
        "TELEMED_ENVIRONMENT": "test",
        "TELEMED_SECRET_KEY": TEST_SECRET,
        "TELEMED_DATA_DIR": str(settings.data_dir),
        "TELEMED_DATABASE_URL": str(settings.database_url),
        "TELEMED_RECORDS_KEK_DIR": str(settings.records_kek_dir),
        "TELEMED_AUDIT_KEY_FILE": str(settings.audit_key_file),
        "COLUMNS": "300",
    }


def telemed(settings: Settings, *args: str) -> tuple[int, str]:
    """Run ``telemed …`` as an operator on the server host would; returns exit code and output."""
    result = runner.invoke(cli, list(args), env=_cli_env(settings))
    return result.exit_code, result.stdout + result.stderr


def claims_of(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT, to check what the server put in it."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def problem(resp: httpx.Response) -> dict[str, Any]:
    """The problem body without the fields that name this very request."""
    assert resp.headers["content-type"] == "application/problem+json", resp.text
    body: dict[str, Any] = resp.json()
    return {k: v for k, v in body.items() if k not in ("request_id", "instance")}


@dataclass
class Device:
    """An enrolled, attested device: its key and current posture token."""

    id: str
    key: Ed25519PrivateKey
    token: str
    jti: str

    def posture(self, method: str, path: str) -> dict[str, str]:
        """X-Posture-Token and a fresh proof for this request."""
        return {"X-Posture-Token": self.token, "X-Posture-Proof": self.proof(method, path, self.jti)}

    def proof(self, method: str, path: str, token_jti: str) -> str:
        """A fresh request proof by this device's key, bound to ``token_jti``."""
        return sign_request_proof(
            self.key,
            method=method,
            url=BASE + path,
            token_jti=token_jti,
            iat=utcnow(),
            nonce=secrets.token_urlsafe(16),
        )


@dataclass
class Ward:
    client: TestClient
    services: Services
    admin: dict[str, str]
    host_id: str
    host: dict[str, str]
    nurse_id: str
    nurse: dict[str, str]
    specialist_user: dict[str, str]
    laptop: Device
    laptop2: Device
    room: Device
    patient_a: str
    patient_b: str
    doc_a: str
    doc_a2: str
    doc_b: str
    consultation: str
    extra: dict[str, Any] = field(default_factory=dict)

    # --- building ---------------------------------------------------------------------------

    def add_patient(self, prison_number: str, name: str) -> str:
        body = {
            "prison_number": prison_number,
            "name": name,
            "date_of_birth": "1980-02-03",
            "establishment": ESTABLISHMENT,
        }
        resp = self.client.post("/api/v1/patients", json=body, headers=self.admin)
        assert resp.status_code == 201, resp.text
        patient_id: str = resp.json()["id"]
        return patient_id

    def import_document(
        self, patient_id: str, content: bytes, *, title: str = "Discharge letter", doc_type: str = "letter"
    ) -> str:
        resp = self.client.post(
            f"/api/v1/records/patients/{patient_id}/documents",
            params={"doc_type": doc_type, "title": title, "document_date": "2026-11-01", "author": "Dr Who"},
            content=content,
            headers={**self.admin, "Content-Type": "text/plain"},
        )
        assert resp.status_code == 201, resp.text
        document_id: str = resp.json()["id"]
        return document_id

    def book(self, patient_id: str, *, host_id: str | None = None, minutes_left: int = 55) -> str:
        """Book a consultation (as the host, through the API) and move it to now."""
        start = utcnow() + timedelta(hours=1)
        body = {
            "patient_id": patient_id,
            "host_user_id": host_id or self.host_id,
            "room_device_id": self.room.id,
            "specialist": {"name": "Dr Outside"},
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(hours=1)).isoformat(),
        }
        resp = self.client.post("/api/v1/consultations", json=body, headers=self.admin)
        assert resp.status_code == 201, resp.text
        cid: str = resp.json()["id"]
        with session_scope(self.services.engine) as session:
            row = session.get(Consultation, cid)
            assert row is not None
            row.scheduled_start = utcnow() - timedelta(minutes=5)
            row.scheduled_end = utcnow() + timedelta(minutes=minutes_left)
            session.add(row)
        return cid

    def go_live(self, cid: str, *, host_id: str | None = None) -> None:
        """Host present, identity confirmed, consent recorded, started."""
        host = host_id or self.host_id
        with session_scope(self.services.engine) as session:
            row = consultations.get_consultation(session=session, consultation_id=cid)
            consultations.mark_host_present(session=session, consultation=row)
            consultations.confirm_identity(session=session, consultation=row, by_user_id=host)
            consultations.record_consent(
                session=session, consultation=row, by_user_id=host, consent="verbal", note=None
            )
            consultations.start_consultation(session=session, consultation=row, by_user_id=host)

    def end(self, cid: str, headers: dict[str, str] | None = None) -> None:
        resp = self.client.post(
            f"/api/v1/consultations/{cid}/end", json={"reason": "done"}, headers=headers or self.host
        )
        assert resp.status_code == 200, resp.text

    def specialist_join_token(self, cid: str) -> tuple[str, str]:
        """Invite the booked specialist and redeem the link: (participant id, join token)."""
        resp = self.client.post(f"/api/v1/consultations/{cid}/invites", json={}, headers=self.host)
        assert resp.status_code == 201, resp.text
        token = resp.json()["link"].split("#", 1)[1]
        redeemed = self.client.post("/api/v1/invites/redeem", json={"token": token})
        assert redeemed.status_code == 200, redeemed.text
        body = redeemed.json()
        return body["participant_id"], body["token"]

    # --- using ------------------------------------------------------------------------------

    def request_grant(
        self,
        cid: str | None = None,
        *,
        device: Device | None = None,
        headers: dict[str, str] | None = None,
        posture: bool = True,
    ) -> httpx.Response:
        path = "/api/v1/records/grants"
        shown = (device or self.laptop).posture("POST", path) if posture else {}
        return self.client.post(
            path,
            json={"consultation_id": cid or self.consultation},
            headers={**(headers or self.host), **shown},
        )

    def grant(self, cid: str | None = None) -> dict[str, Any]:
        resp = self.request_grant(cid)
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def use(
        self,
        method: str,
        path: str,
        grant: str,
        *,
        device: Device | None = None,
        headers: dict[str, str] | None = None,
        proof: bool = True,
        **kw: Any,
    ) -> httpx.Response:
        """Call a records endpoint with a grant and a proof by the device's key bound to it."""
        jti = claims_of(grant)["jti"] if grant.count(".") == 2 else "none"
        extra = {"X-Record-Grant": grant}
        if proof:
            extra["X-Posture-Proof"] = (device or self.laptop).proof(method, path, jti)
        return self.client.request(method, path, headers={**(headers or self.host), **extra}, **kw)

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        resp = self.client.get("/api/v1/audit/entries", params={"limit": 500, **params}, headers=self.admin)
        assert resp.status_code == 200, resp.text
        entries: list[dict[str, Any]] = resp.json()["entries"]
        return entries


def _device(client: TestClient, admin: dict[str, str], device_id: str, kind: str = "prison_laptop") -> Device:
    key = enrol(client, admin, device_id, kind)
    resp = attest(client, device_id, key, kind=kind)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return Device(id=device_id, key=key, token=body["posture_token"], jti=body["token_jti"])


def build_ward(client: TestClient, services: Services) -> Ward:
    """Everything a record-access test needs, made the way the product makes it."""
    add_user(services, "root", role=Role.ADMIN)
    host_id = add_user(services, "doctor", display_name="Dr Host", establishment=ESTABLISHMENT)
    nurse_id = add_user(services, "nurse", display_name="Nurse Other", establishment=ESTABLISHMENT)
    add_user(services, "outsider", role=Role.SPECIALIST, display_name="Dr Outside")
    admin = bearer(login(client, "root")["access_token"])
    ward = Ward(
        client=client,
        services=services,
        admin=admin,
        host_id=host_id,
        host=bearer(login(client, "doctor")["access_token"]),
        nurse_id=nurse_id,
        nurse=bearer(login(client, "nurse")["access_token"]),
        specialist_user=bearer(login(client, "outsider")["access_token"]),
        laptop=_device(client, admin, "laptop-01"),
        laptop2=_device(client, admin, "laptop-02"),
        room=_device(client, admin, "room-01", "room_endpoint"),
        patient_a="",
        patient_b="",
        doc_a="",
        doc_a2="",
        doc_b="",
        consultation="",
    )
    ward.patient_a = ward.add_patient("A1234BC", "Ada Quillfeather")
    ward.patient_b = ward.add_patient("B5678DE", "Bertram Oddly")
    ward.doc_a = ward.import_document(ward.patient_a, b"Letter for A. " + MARKER)
    ward.doc_a2 = ward.import_document(ward.patient_a, b"Second letter for A.", title="Referral")
    ward.doc_b = ward.import_document(ward.patient_b, b"Letter for B.")
    ward.consultation = ward.book(ward.patient_a)
    ward.go_live(ward.consultation)
    return ward
