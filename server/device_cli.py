"""``telemed device``: enrol, list and revoke devices, and review posture checks, from the server host.

Revoking here refuses the device's posture tokens from their next use on (every use checks
the enrolment); a device in a live call is suspended by the hub when it next presents its
posture — revoke through the API (``POST /api/v1/devices/{id}/revoke``) to suspend it at once.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from device_policy.errors import DevicePolicyError
from server.db import make_engine
from server.devices import checks, enrolment
from server.devices.models import CheckOutcome, DeviceCreate, DeviceKind, DeviceStatus
from server.errors import TelemedError

device_cli = typer.Typer(help="Enrol, list and revoke devices; review posture checks.", no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)


def _operator() -> str:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = "unknown"
    return f"cli:{name}"[:32]


@contextmanager
def _session() -> Iterator[Session]:
    # Imported here: server.cli registers this module at its bottom.
    from server.cli import load_settings, prepare_database

    settings = load_settings()
    prepare_database(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            yield session
    finally:
        engine.dispose()


def _fail(exc: TelemedError | DevicePolicyError) -> typer.Exit:
    err_console.print(f"[red]{exc.code}:[/red] {exc.detail}")
    return typer.Exit(1)


@device_cli.command("enrol")
def enrol(
    device_id: str = typer.Argument(..., help="Device id, e.g. laptop-hmp-example-01."),
    kind: DeviceKind = typer.Option(..., help="prison_laptop or room_endpoint."),
    public_key: str = typer.Option(..., help="Public key printed by `telemed-device enrol` (base64url)."),
    serial: str = typer.Option(..., help="Serial number."),
    model: str = typer.Option(..., help="Make and model."),
    type_approval: str = typer.Option("", help="Type-approval reference of the model."),
    establishment: str | None = typer.Option(None, help="Prison the device belongs to."),
    display_name: str = typer.Option("", help="Name shown to people in a call."),
    imei: str | None = typer.Option(None, help="Modem IMEI (laptops)."),
    iccid: str | None = typer.Option(None, help="ICCID of the SIM allowed in the laptop."),
    imsi: str | None = typer.Option(None, help="IMSI of the SIM allowed in the laptop."),
) -> None:
    """Enrol a device with the public key its agent generated."""
    try:
        data = DeviceCreate.model_validate(
            {
                "id": device_id,
                "kind": kind,
                "public_key": public_key,
                "serial": serial,
                "model": model,
                "type_approval": type_approval,
                "establishment": establishment,
                "display_name": display_name,
                "imei": imei,
                "iccid": iccid,
                "imsi": imsi,
            }
        )
    except ValidationError as exc:
        for error in exc.errors(include_input=False):
            where = ".".join(str(p) for p in error["loc"])
            err_console.print(f"[red]invalid {where}:[/red] {error['msg']}")
        raise typer.Exit(1) from None
    with _session() as session:
        try:
            device = enrolment.enrol_device(
                session=session, data=data, enrolled_by=_operator(), actor_role="operator"
            )
        except (TelemedError, DevicePolicyError) as exc:
            raise _fail(exc) from None
        session.commit()
        console.print(f"Enrolled {device.kind.value} [bold]{device.id}[/bold]")
        console.print(f"  key thumbprint: {device.key_thumbprint}")


@device_cli.command("list")
def list_devices(
    status: DeviceStatus | None = typer.Option(None, help="Only active or revoked devices."),
) -> None:
    """List enrolled devices."""
    table = Table("id", "kind", "status", "establishment", "serial", "thumbprint")
    with _session() as session:
        for device in enrolment.list_devices(session=session, status=status):
            table.add_row(
                device.id,
                device.kind.value,
                DeviceStatus(device.status).value,
                device.establishment or "",
                device.serial,
                device.key_thumbprint,
            )
    console.print(table)


@device_cli.command("revoke")
def revoke(
    device_id: str = typer.Argument(..., help="The device to revoke."),
    reason: str = typer.Option("revoked by an operator", help="Why (kept in the audit trail)."),
) -> None:
    """Revoke a device; its posture tokens are refused from their next use."""
    with _session() as session:
        try:
            device = enrolment.get_device(session=session, device_id=device_id)
            enrolment.revoke_device(
                session=session, device=device, by_user_id=_operator(), reason=reason, actor_role="operator"
            )
        except (TelemedError, DevicePolicyError) as exc:
            raise _fail(exc) from None
        session.commit()
    console.print(f"Revoked [bold]{device_id}[/bold]; its posture tokens are refused from now on.")


@device_cli.command("checks")
def list_checks(
    device: str | None = typer.Option(None, help="Only this device."),
    outcome: CheckOutcome | None = typer.Option(None, help="pass, fail or refused."),
    limit: int = typer.Option(50, min=1, max=1000, help="How many, newest first."),
) -> None:
    """List recent posture checks (`--outcome fail` for failed ones)."""
    table = Table("when (UTC)", "device", "outcome", "code", "failed rules", "policy")
    with _session() as session:
        for check in checks.list_checks(session=session, device_id=device, outcome=outcome, limit=limit):
            table.add_row(
                check.checked_at.strftime("%Y-%m-%d %H:%M:%S"),
                check.device_id,
                check.outcome,
                check.code or "",
                check.failed_rules.replace(",", ", "),
                check.policy_version or "",
            )
    console.print(table)
