"""Signing in to the admin console: password, TOTP second factor (enrolled with a QR code on first
sign-in), recovery codes, the session cookie, CSRF, idle timeout and lifetime, sign-out, lockout."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pyotp
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from records.audit.log import iter_entries
from server.admin.models import AdminRecoveryCode, AdminSecondFactor, AdminSession
from server.admin.secretbox import SealedSecretUnreadable, open_totp_secret
from server.app import create_app
from server.db import session_scope, utcnow
from server.identity.models import Role
from server.services import Services
from server.settings import Settings
from tests.conftest import TEST_SECRET, make_settings
from tests.server.admin.conftest import USER_AGENT, Console, code_at, other_browser, problem
from tests.server.factories import PASSWORD, add_user

RECOVERY = re.compile(r"^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$")


def set_cookie(response_headers: list[str]) -> str:
    return next(h for h in response_headers if h.startswith("telemed_admin="))


def test_the_page_and_every_answer_carry_the_security_headers(console: Console) -> None:
    page = console.get("/admin")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/admin/assets/admin.mjs">' in page.text
    for response in (page, console.get("/admin/assets/admin.css"), console.get("/admin/api/session")):
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "require-trusted-types-for 'script'" in csp
        assert "'unsafe-inline'" not in csp
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "camera=()" in response.headers["permissions-policy"]
    missing = console.get("/admin/assets/nothing.mjs")
    assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"
    assert console.get("/admin/assets/..%2Fmodels.py").status_code == 404


def test_first_sign_in_enrols_totp_with_a_qr_code_then_shows_recovery_codes_once(
    console: Console, services: Services, admin_id: str
) -> None:
    signed = console.sign_in()
    assert signed.status_code == 200, signed.text
    assert signed.json()["stage"] == "enrol"
    cookie = set_cookie(signed.headers.get_list("set-cookie"))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert "Max-Age" not in cookie and "expires" not in cookie.lower()  # gone when the browser closes

    # Before enrolling, the console itself is out of reach.
    refused = console.get("/admin/api/audit/entries")
    assert refused.status_code == 401 and problem(refused)["code"] == "second_factor_required"

    offered = console.get("/admin/api/enrolment").json()
    assert offered == console.get("/admin/api/enrolment").json()  # the same secret until confirmed
    assert (offered["digits"], offered["period_s"], offered["algorithm"]) == (6, 30, "SHA1")
    assert re.fullmatch(r"[A-Z2-7]{32}", offered["secret"])
    assert offered["otpauth_uri"] == pyotp.TOTP(offered["secret"]).provisioning_uri(
        name="root", issuer_name="telemed"
    )
    qr = console.get(offered["qr_svg_url"])
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
    assert qr.headers["cache-control"] == "no-store"
    assert qr.text.startswith("<svg") and "<title>QR code for your authenticator app</title>" in qr.text

    wrong = console.post("/admin/api/enrolment", json={"code": "000000"})
    if code_at(offered["secret"], time.time()) != "000000":
        assert wrong.status_code == 401 and problem(wrong)["code"] == "invalid_code"

    old_cookie = console.client.cookies.get("telemed_admin")
    done = console.post("/admin/api/enrolment", json={"code": code_at(offered["secret"], time.time())})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["session"]["stage"] == "active"
    assert body["session"]["recovery_codes_left"] == 10
    codes = body["recovery_codes"]
    assert len(codes) == 10 == len(set(codes)) and all(RECOVERY.match(c) for c in codes)
    assert console.client.cookies.get("telemed_admin") != old_cookie  # a new token for the new stage
    assert console.get("/admin/api/audit/entries").status_code == 200

    # The codes are never shown again, and none of the secrets is stored in clear.
    again = console.get("/admin/api/enrolment")
    assert again.status_code == 403 and problem(again)["code"] == "access_denied"
    with Session(services.engine) as session:
        factor = session.get(AdminSecondFactor, admin_id)
        assert factor is not None and offered["secret"].encode() not in factor.secret_encrypted
        assert (
            open_totp_secret(TEST_SECRET.encode(), user_id=admin_id, sealed=factor.secret_encrypted)
            == (offered["secret"])
        )
        try:
            open_totp_secret(TEST_SECRET.encode(), user_id="someone-else", sealed=factor.secret_encrypted)
            raise AssertionError("a sealed secret opened for another user")
        except SealedSecretUnreadable:
            pass
        stored = [row.code_hash for row in session.exec(select(AdminRecoveryCode))]
        assert len(stored) == 10 and not any(c.replace("-", "") in "".join(stored) for c in codes)
        row = session.exec(select(AdminSession)).one()
        assert old_cookie is not None and old_cookie not in row.token_hash


def test_the_old_cookie_stops_working_when_the_stage_changes(
    console: Console, app: FastAPI, admin_id: str
) -> None:
    console.sign_in()
    before = console.client.cookies.get("telemed_admin")
    console.enrol()
    stale = other_browser(app)
    stale.client.cookies.set("telemed_admin", str(before))
    answer = stale.get("/admin/api/session")
    assert answer.status_code == 401 and problem(answer)["code"] == "authentication_required"


def test_sign_in_with_a_totp_code_each_code_only_once(signed_in: Console) -> None:
    assert signed_in.delete("/admin/api/session").status_code == 204
    signed = signed_in.sign_in()
    assert signed.json()["stage"] == "second_factor"
    assert signed_in.get("/admin/api/users").status_code == 401

    code = signed_in.next_code()
    first = signed_in.second_factor(code=code)
    assert first.status_code == 200, first.text
    assert first.json()["stage"] == "active"

    # Signed out and in again: the same code (still inside its 30 s window) is a replay.
    signed_in.delete("/admin/api/session")
    signed_in.sign_in()
    replay = signed_in.second_factor(code=code)
    assert replay.status_code == 401 and problem(replay)["code"] == "code_reused"
    wrong = signed_in.second_factor(code="12345")
    assert wrong.status_code == 401 and problem(wrong)["code"] == "invalid_code"


def test_a_recovery_code_signs_in_once(signed_in: Console) -> None:
    code = signed_in.recovery_codes[3]
    signed_in.delete("/admin/api/session")
    signed_in.sign_in()
    # Case, spaces and look-alike letters do not matter.
    typed = code.upper().replace("-", " ")
    used = signed_in.second_factor(recovery_code=typed)
    assert used.status_code == 200, used.text
    assert used.json()["recovery_codes_left"] == 9
    signed_in.delete("/admin/api/session")
    signed_in.sign_in()
    again = signed_in.second_factor(recovery_code=code)
    assert again.status_code == 401 and problem(again)["code"] == "invalid_code"


def test_wrong_passwords_and_wrong_codes_are_throttled_like_the_api_sign_in(
    signed_in: Console, settings: Settings
) -> None:
    signed_in.delete("/admin/api/session")
    # Wrong second-factor codes count: the password alone cannot reset the count between guesses.
    for _ in range(settings.login_free_attempts_per_account_client - 1):
        assert signed_in.sign_in().status_code == 200
        assert signed_in.second_factor(code="12345").status_code == 401
    assert signed_in.sign_in(password="wrong password!").status_code == 401
    throttled = signed_in.sign_in()
    assert throttled.status_code == 429 and problem(throttled)["code"] == "login_throttled"
    assert int(throttled.headers["retry-after"]) > 0
    # The API sign-in shares the throttle.
    api = signed_in.client.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
    assert api.status_code == 429


def test_only_admins_and_only_with_the_right_password(console: Console, services: Services) -> None:
    add_user(services, "dr.host", role=Role.CLINICIAN)
    clinician = console.sign_in("dr.host")
    assert clinician.status_code == 403 and problem(clinician)["code"] == "access_denied"
    assert not clinician.headers.get_list("set-cookie")
    unknown = console.sign_in("nobody")
    assert unknown.status_code == 401 and problem(unknown)["code"] == "invalid_credentials"
    assert problem(unknown)["detail"] == "Wrong username or password"


def test_csrf_origin_and_token(signed_in: Console) -> None:
    # No Origin, or another site's: refused before anything is looked at.
    no_origin = signed_in.client.post("/admin/api/session", json={"username": "root", "password": PASSWORD})
    assert no_origin.status_code == 403 and problem(no_origin)["code"] == "csrf_refused"
    elsewhere = signed_in.post("/admin/api/users/x/disable", headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403 and problem(elsewhere)["code"] == "csrf_refused"
    # Right origin but no token, or a token of another session.
    token = signed_in.csrf
    signed_in.csrf = None
    missing = signed_in.post("/admin/api/integrity/verify")
    assert missing.status_code == 403 and problem(missing)["code"] == "csrf_refused"
    signed_in.csrf = "0" * 64
    assert problem(signed_in.post("/admin/api/integrity/verify"))["code"] == "csrf_refused"
    signed_in.csrf = token
    assert signed_in.post("/admin/api/integrity/verify").status_code == 200
    # Reading needs no token (safe methods change nothing but the idle clock).
    signed_in.csrf = None
    assert signed_in.get("/admin/api/integrity").status_code == 200


def test_idle_timeout_and_lifetime_end_the_session(
    signed_in: Console, services: Services, settings: Settings
) -> None:
    session_id = signed_in.get("/admin/api/session").json()["session_id"]

    def shift(**changes: object) -> None:
        with session_scope(services.engine) as session:
            row = session.get(AdminSession, session_id)
            assert row is not None
            for name, value in changes.items():
                setattr(row, name, value)

    # Just inside the idle timeout: still signed in, and the request restarts the clock.
    shift(last_seen_at=utcnow() - settings.admin_idle_timeout + timedelta(seconds=20))
    assert signed_in.get("/admin/api/session").status_code == 200
    shift(last_seen_at=utcnow() - settings.admin_idle_timeout - timedelta(seconds=1))
    idle = signed_in.get("/admin/api/users")
    assert idle.status_code == 401 and problem(idle) | {"reason": "idle"} == problem(idle)
    assert problem(idle)["code"] == "session_expired"
    assert 'telemed_admin=""' in idle.headers["set-cookie"]  # the cookie is cleared

    signed_in.sign_in()
    signed_in.second_factor(code=signed_in.next_code())
    session_id = signed_in.get("/admin/api/session").json()["session_id"]
    shift(expires_at=utcnow() - timedelta(seconds=1))
    old = signed_in.get("/admin/api/users")
    assert problem(old)["code"] == "session_expired" and problem(old)["reason"] == "lifetime"


def test_the_session_reports_its_timeouts(signed_in: Console, settings: Settings) -> None:
    body = signed_in.get("/admin/api/session").json()
    assert body["idle_timeout_s"] == settings.admin_idle_timeout.total_seconds() == 900
    assert body["user"] == {"id": body["user"]["id"], "username": "root", "display_name": "Ada Admin"}


def test_sign_out_ends_the_session_now(signed_in: Console) -> None:
    out = signed_in.delete("/admin/api/session")
    assert out.status_code == 204
    assert 'telemed_admin=""' in out.headers["set-cookie"]
    assert signed_in.get("/admin/api/session").status_code == 401


def test_disabling_an_admin_or_resetting_their_factor_ends_their_sessions(
    signed_in: Console, app: FastAPI, services: Services
) -> None:
    other_id = add_user(services, "second.admin", role=Role.ADMIN, display_name="Bo Admin")
    other = other_browser(app)
    other.sign_in("second.admin")
    other.enrol()
    assert other.get("/admin/api/users").status_code == 200

    reset = signed_in.post(f"/admin/api/users/{other_id}/reset-second-factor")
    assert reset.status_code == 200 and reset.json()["second_factor"] is False
    assert problem(other.get("/admin/api/users"))["code"] == "session_expired"
    assert other.sign_in("second.admin").json()["stage"] == "enrol"  # enrols again
    other.enrol()

    assert signed_in.post(f"/admin/api/users/{other_id}/disable").status_code == 200
    assert other.get("/admin/api/users").status_code == 401
    assert other.sign_in("second.admin").status_code == 401


def test_every_sign_in_step_is_audited_with_where_it_came_from(
    signed_in: Console, services: Services
) -> None:
    signed_in.sign_in(password="not the password")
    with Session(services.engine) as session:
        entries = [e for e in iter_entries(session=session) if e.action.startswith("admin.")]
    seen = [(e.action, e.outcome) for e in entries]
    assert seen == [
        ("admin.sign_in", "success"),
        ("admin.enrol", "success"),
        ("admin.sign_in", "failure"),
    ]
    for entry in entries:
        assert entry.actor_role == "admin" and entry.actor_id is not None
        assert entry.ip == "testclient"
        assert entry.detail["user_agent"] == USER_AGENT
        assert entry.purpose_of_use == "HSYSADMIN" and entry.request_id
    assert "session" in entries[1].detail
    assert entries[2].detail["reason"] == "invalid_credentials"


def test_over_https_the_cookie_is_secure_and_host_only(services: Services, db_url: str) -> None:
    https = make_settings(db_url, services.settings.data_dir, public_url="https://admin.example")
    add_user(services, "root", role=Role.ADMIN)
    built = Services.build(https)
    try:
        with TestClient(create_app(https, services=built), base_url="https://admin.example") as client:
            answer = client.post(
                "/admin/api/session",
                json={"username": "root", "password": PASSWORD},
                headers={"Origin": "https://admin.example"},
            )
            assert answer.status_code == 200, answer.text
            cookie = answer.headers["set-cookie"]
            assert cookie.startswith("__Host-telemed_admin=") and "Secure" in cookie and "Path=/" in cookie
            assert "Domain" not in cookie
            assert client.get("/admin/api/session").json()["stage"] == "enrol"
    finally:
        built.engine.dispose()
