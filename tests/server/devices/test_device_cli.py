"""``telemed device``: enrol, list, revoke and review checks from the server host — on both databases."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session
from typer.testing import CliRunner

from device_policy.keys import b64url_encode, generate_device_key, key_thumbprint, public_key_b64
from server.cli import cli
from server.db import make_engine
from server.devices.models import Device

runner = CliRunner()


def _invoke(db_url: str, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {"TELEMED_DATABASE_URL": db_url, "TELEMED_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    result = runner.invoke(cli, ["device", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_enrol_list_revoke(db_url: str, tmp_path: Path) -> None:
    key = generate_device_key()
    public = public_key_b64(key.public_key())
    code, out, err = _invoke(
        db_url,
        tmp_path,
        "enrol",
        "room-hmp-01",
        "--kind",
        "room_endpoint",
        "--public-key",
        public,
        "--serial",
        "RE-77",
        "--model",
        "Room Kit Mini",
        "--establishment",
        "HMP Example",
    )
    assert code == 0, err
    assert "Enrolled room_endpoint room-hmp-01" in out and key_thumbprint(key.public_key()) in out

    code, out, _ = _invoke(db_url, tmp_path, "list")
    assert code == 0 and "room-hmp-01" in out and "active" in out and "HMP Example" in out

    code, out, err = _invoke(db_url, tmp_path, "revoke", "room-hmp-01", "--reason", "replaced")
    assert code == 0, err
    _, out, _ = _invoke(db_url, tmp_path, "list", "--status", "revoked")
    assert "room-hmp-01" in out
    code, _, err = _invoke(db_url, tmp_path, "revoke", "room-hmp-01")
    assert code == 1 and "invalid_state" in err and '"revoked"' in err


def test_enrol_refuses_bad_input_with_the_reason(db_url: str, tmp_path: Path) -> None:
    base = ["enrol", "laptop-01", "--kind", "prison_laptop", "--serial", "S", "--model", "M"]
    code, _, err = _invoke(db_url, tmp_path, *base, "--public-key", b64url_encode(b"\x00" * 16))
    assert code == 1 and "invalid_key" in err and "32 bytes" in err
    good = public_key_b64(generate_device_key().public_key())
    code, _, err = _invoke(db_url, tmp_path, *base, "--public-key", good, "--imei", "123")
    assert code == 1 and "invalid imei" in err
    code, _, err = _invoke(db_url, tmp_path, *base, "--public-key", good)
    assert code == 0, err
    code, _, err = _invoke(
        db_url, tmp_path, *base, "--public-key", public_key_b64(generate_device_key().public_key())
    )
    assert code == 1 and "already_exists" in err
    code, out, _ = _invoke(db_url, tmp_path, "checks", "--outcome", "fail")
    assert code == 0 and "laptop-01" not in out


def test_enrol_a_laptop_with_its_modem_sim_and_type_approval(db_url: str, tmp_path: Path) -> None:
    key = generate_device_key()
    code, out, err = _invoke(
        db_url,
        tmp_path,
        "enrol",
        "laptop-07",
        "--kind",
        "prison_laptop",
        "--public-key",
        public_key_b64(key.public_key()),
        "--serial",
        "5CG1234XYZ",
        "--model",
        "Latitude 7440 Rugged",
        "--type-approval",
        "TA-2026-0042",
        "--imei",
        "356938035643809",
        "--iccid",
        "8944000000000000001",
        "--imsi",
        "234150000000001",
    )
    assert code == 0, err
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            device = session.get(Device, "laptop-07")
            assert device is not None
            assert (device.serial, device.model, device.type_approval) == (
                "5CG1234XYZ",
                "Latitude 7440 Rugged",
                "TA-2026-0042",
            )
            assert (device.imei, device.iccid, device.imsi) == (
                "356938035643809",
                "8944000000000000001",
                "234150000000001",
            )
            assert device.key_thumbprint == key_thumbprint(key.public_key())
    finally:
        engine.dispose()
