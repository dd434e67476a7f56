"""The healthcare rooms staff can book: active room endpoints, by establishment and name."""

from __future__ import annotations

from sqlmodel import Session, col, select

from server.devices.models import Device, DeviceKind, DeviceStatus


def room_name(device: Device) -> str:
    """The name people know a room by: its display name, or its id when it has none."""
    return device.display_name.strip() or device.id


def list_rooms(*, session: Session) -> list[Device]:
    """Active room endpoints, ordered by establishment (none last), then name, then id."""
    rooms = session.exec(
        select(Device).where(
            col(Device.kind) == DeviceKind.ROOM_ENDPOINT, col(Device.status) == DeviceStatus.ACTIVE
        )
    ).all()
    # Sorted here, not in SQL: SQLite and PostgreSQL disagree on NULL placement and collation,
    # and the console must show the same order whichever database is behind it.
    return sorted(
        rooms,
        key=lambda d: (
            d.establishment is None,
            (d.establishment or "").casefold(),
            room_name(d).casefold(),
            d.id,
        ),
    )
