"""The home screen's numbers: what is waiting for the admin."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from sqlalchemy import func
from sqlmodel import col, select

from records.models import BreakGlassAccess
from server.admin.deps import AdminDep
from server.admin.routes.audit import integrity_status
from server.admin.routes.headers import AdminRoute
from server.admin.schemas import OverviewOut
from server.consultations import service as consultations
from server.db import utcnow
from server.deps import SessionDep
from server.devices.models import DeviceCheck

router = APIRouter(prefix="/admin/api", tags=["admin"], route_class=AdminRoute)


@router.get("/overview", response_model=OverviewOut)
def overview(admin: AdminDep, session: SessionDep) -> OverviewOut:
    """Break-glass accesses waiting, failed device checks in the last day, integrity, today's bookings."""
    now = utcnow()
    pending = session.exec(
        select(func.count()).select_from(BreakGlassAccess).where(BreakGlassAccess.status == "pending")
    ).one()
    failed = session.exec(
        select(func.count())
        .select_from(DeviceCheck)
        .where(col(DeviceCheck.outcome) != "pass", col(DeviceCheck.checked_at) >= now - timedelta(days=1))
    ).one()
    today = consultations.list_consultations(session=session, user=admin.user, day=now.date())
    return OverviewOut(
        pending_break_glass=int(pending),
        failed_device_checks_24h=int(failed),
        integrity=integrity_status(session),
        consultations_today=len(today),
    )
