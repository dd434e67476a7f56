"""The ``telemed`` command: serve, first-run setup, users, keys, database.

Features add their own sub-commands (``telemed audit``, ``telemed device``…) by
registering a Typer app on ``cli`` in their own module, imported at the bottom.
"""

from __future__ import annotations

import getpass
import json
import shlex

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from server.db import make_engine, session_scope, upgrade_database
from server.errors import TelemedError
from server.identity import service as identity
from server.identity.models import Role
from server.security.keys import ensure_signing_key, rotate_signing_key
from server.security.limits import uvicorn_limits
from server.settings import Settings
from server.signalling.limits import WS_MAX_FRAME_BYTES

cli = typer.Typer(help="telemed: video consultations for prison healthcare.", no_args_is_help=True)
user_cli = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
keys_cli = typer.Typer(help="Manage signing keys.", no_args_is_help=True)
db_cli = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
cli.add_typer(user_cli, name="user")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(db_cli, name="db")

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    """Read the settings, turning configuration mistakes into a readable exit."""
    try:
        return Settings()
    except ValueError as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _operator(via: str) -> identity.ChangedBy:
    """The person at the terminal, as account changes' audit entries name them."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = "unknown"
    return identity.ChangedBy(actor_id=f"cli:{name}"[:64], actor_role="operator", via=via)


def _session(settings: Settings) -> Session:
    return Session(make_engine(settings.resolved_database_url), expire_on_commit=False)


def prepare_database(settings: Settings) -> None:
    """Apply migrations and make sure a signing key exists."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with session_scope(engine) as session:
        ensure_signing_key(session=session, secret=settings.secret_key.get_secret_value().encode())
    engine.dispose()


@cli.command()
def serve(
    host: str | None = typer.Option(None, help="Interface to bind (default TELEMED_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to bind (default TELEMED_PORT, 8000)."),
) -> None:
    """Migrate the database and run the server."""
    import uvicorn

    from server.app import create_app
    from server.ops.logging import configure_logging

    settings = load_settings()
    configure_logging(level=settings.log_level, json_lines=settings.log_json)
    prepare_database(settings)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        ws_max_size=WS_MAX_FRAME_BYTES,  # above the hub's own limit: it answers, uvicorn closes
        **uvicorn_limits(settings.max_request_header_bytes),
    )


@cli.command()
def init(
    username: str = typer.Option("admin", help="Username of the first admin."),
    display_name: str = typer.Option("Healthcare admin", help="Shown name of the first admin."),
) -> None:
    """Create the first admin account and print how to sign in."""
    settings = load_settings()
    prepare_database(settings)
    with _session(settings) as session:
        if identity.count_admins(session=session) > 0:
            err_console.print(
                "[yellow]An admin already exists; nothing done.[/yellow] Use `telemed user add`."
            )
            raise typer.Exit(1)
        password = identity.generate_password()
        identity.create_user(
            session=session,
            username=username,
            changed_by=_operator("init"),
            password=password,
            role=Role.ADMIN,
            display_name=display_name,
        )
        session.commit()
    # typer.echo, not rich: rich wraps at 80 columns when stdout is not a terminal
    # (`telemed init | cat`), which would break the password and the command when pasted.
    typer.echo(f"Created admin {username}. This password is shown once:")
    typer.echo(f"  {password}")
    typer.echo("Sign in with (put the password in place of <password>):")
    typer.echo(sign_in_command(settings.public_url, username))


def sign_in_command(public_url: str, username: str) -> str:
    """A one-line, shell-quoted curl command that signs ``username`` in (password left as <password>)."""
    body = json.dumps({"username": username, "password": "<password>"}, separators=(",", ":"))
    url = f"{public_url.rstrip('/')}/api/v1/auth/login"
    return shlex.join(["curl", "-s", "-X", "POST", url, "-H", "content-type: application/json", "-d", body])


@user_cli.command("add")
def user_add(
    username: str,
    role: Role = typer.Option(..., help="clinician, specialist or admin."),
    display_name: str = typer.Option(..., help="Name shown to others in a call."),
    establishment: str | None = typer.Option(None, help="Prison or hospital."),
    password: str | None = typer.Option(
        None,
        envvar="TELEMED_NEW_USER_PASSWORD",
        help="Password (default: generated and printed once).",
    ),
) -> None:
    """Add a user."""
    settings = load_settings()
    prepare_database(settings)
    generated = password is None
    secret = password or identity.generate_password()
    with _session(settings) as session:
        try:
            identity.create_user(
                session=session,
                username=username,
                password=secret,
                role=role,
                display_name=display_name,
                establishment=establishment,
                changed_by=_operator("cli"),
            )
        except TelemedError as exc:
            session.commit()  # the refusal's audit entry
            err_console.print(f"[red]{exc.code}:[/red] {exc.detail}")
            raise typer.Exit(1) from exc
        session.commit()
    console.print(f"Added {role.value} [bold]{username}[/bold].")
    if generated:
        console.print(f"Password (shown once): [bold]{secret}[/bold]")


@user_cli.command("list")
def user_list(role: Role | None = typer.Option(None, help="Only this role.")) -> None:
    """List users."""
    settings = load_settings()
    prepare_database(settings)
    table = Table("username", "role", "name", "establishment", "status")
    with _session(settings) as session:
        for user in identity.list_users(session=session, role=role):
            table.add_row(
                user.username,
                user.role.value,
                user.display_name,
                user.establishment or "",
                "disabled" if user.disabled else "active",
            )
    console.print(table)


@user_cli.command("disable")
def user_disable(username: str) -> None:
    """Disable a user; their sessions end at once."""
    settings = load_settings()
    prepare_database(settings)
    with _session(settings) as session:
        try:
            user = identity.get_user_by_username(session=session, username=username)
        except TelemedError as exc:
            identity.record_refused_change(
                session=session,
                changed_by=_operator("cli"),
                action="user.disable",
                user_id=None,
                reason=exc.code,
            )
            session.commit()
            err_console.print(f"[red]{exc.code}:[/red] {exc.detail}")
            raise typer.Exit(1) from exc
        identity.set_disabled(session=session, user=user, disabled=True, changed_by=_operator("cli"))
        session.commit()
    console.print(f"Disabled [bold]{username}[/bold].")


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Add a new token signing key; old keys still verify until their tokens expire."""
    settings = load_settings()
    prepare_database(settings)
    with _session(settings) as session:
        key = rotate_signing_key(
            session=session,
            secret=settings.secret_key.get_secret_value().encode(),
            retention=settings.signing_key_retention,
        )
        session.commit()
        kid = key.kid
    console.print(
        f"New signing key [bold]{kid}[/bold]; previous keys verify for {settings.signing_key_retention}."
    )


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply all pending migrations."""
    settings = load_settings()
    prepare_database(settings)
    console.print("Database is up to date.")


from server.device_cli import device_cli  # noqa: E402 - sub-commands register after cli exists

cli.add_typer(device_cli, name="device")

from server.records_cli import audit_cli, records_cli, rotate_kek  # noqa: E402 - as above

cli.add_typer(records_cli, name="records")
cli.add_typer(audit_cli, name="audit")
keys_cli.command("rotate-kek")(rotate_kek)

from server.demo.cli import demo  # noqa: E402 - as above

cli.command("demo")(demo)


def main() -> None:
    """Entry point of the ``telemed`` console script."""
    cli()


if __name__ == "__main__":
    main()
