"""Metering and billing: card-hours and PFLOP-hours per tenant, queue, accelerator model and day
(UTC), and a price table that turns them into a bill.

Usage is computed from job runs (``job_runs``): a run holds its cards from admission until its
processes are gone, which is what the tenant was given and what a compute centre bills. A run still
going counts up to now.
"""

from __future__ import annotations

import calendar
import datetime as dt
import time
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from wanka.models.hardware import default_catalog
from wanka.server import tables
from wanka.server.auth import Principal

DAY = 86400.0


class PriceTable(BaseModel):
    """Price per card-hour by accelerator model (catalog ids), in one currency."""

    model_config = ConfigDict(extra="forbid")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. CNY")
    card_hour: dict[str, float] = Field(description="accelerator model -> price of one card-hour")

    @field_validator("card_hour")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        catalog = default_catalog()
        for model, price in v.items():
            if model not in catalog:
                raise ValueError(f"unknown accelerator model {model!r}; known: {', '.join(catalog.ids())}")
            if not price >= 0:
                raise ValueError(f"the price of {model} is 0 or more, not {price}")
        return v


class UsageRow(BaseModel):
    tenant: str
    queue: str
    model: str
    day: str = Field(description="YYYY-MM-DD (UTC)")
    card_hours: float
    pflop_hours: float = Field(description="card-hours x the card's rated half-precision PFLOPS")
    cost: float | None = Field(description="card_hours x the model's price; null when unpriced")


class TenantBill(BaseModel):
    tenant: str
    card_hours: float
    pflop_hours: float
    cost: float
    unpriced_card_hours: float = Field(description="card-hours on models the price table omits")


class UsageOut(BaseModel):
    month: str
    currency: str | None
    rows: list[UsageRow]
    bills: list[TenantBill]


def month_bounds(month: str) -> tuple[float, float]:
    year, mon = (int(x) for x in month.split("-"))
    start = calendar.timegm((year, mon, 1, 0, 0, 0))
    days = calendar.monthrange(year, mon)[1]
    return float(start), float(start + days * DAY)


def current_prices(session: Session) -> PriceTable | None:
    doc = session.scalar(select(tables.PriceDocument).order_by(tables.PriceDocument.id.desc()).limit(1))
    return PriceTable.model_validate(doc.body) if doc else None


def usage(session: Session, month: str, tenant_id: int | None, now: float) -> UsageOut:
    lo, hi = month_bounds(month)
    q = (
        select(tables.JobRun, tables.Tenant.name)
        .join(tables.Tenant)
        .where(tables.JobRun.start < hi, or_(tables.JobRun.end.is_(None), tables.JobRun.end > lo))
    )
    if tenant_id is not None:
        q = q.where(tables.JobRun.tenant_id == tenant_id)
    prices = current_prices(session)
    cells: dict[tuple[str, str, str, str], list[float]] = {}
    for run, tenant in session.execute(q):
        begin, end = max(run.start, lo), min(run.end if run.end is not None else now, hi)
        t = begin
        while t < end:  # split at UTC midnights
            day_end = min(end, (t // DAY + 1) * DAY)
            day = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")
            cell = cells.setdefault((tenant, run.queue, run.model, day), [0.0, 0.0])
            hours = run.cards * (day_end - t) / 3600.0
            cell[0] += hours
            cell[1] += hours * run.tflops_per_card / 1000.0
            t = day_end
    rows, bills = [], {}
    for (tenant, queue, model, day), (card_h, pflop_h) in sorted(cells.items()):
        price = prices.card_hour.get(model) if prices else None
        cost = None if price is None else card_h * price
        rows.append(
            UsageRow(
                tenant=tenant,
                queue=queue,
                model=model,
                day=day,
                card_hours=card_h,
                pflop_hours=pflop_h,
                cost=cost,
            )
        )
        b = bills.setdefault(
            tenant, TenantBill(tenant=tenant, card_hours=0, pflop_hours=0, cost=0, unpriced_card_hours=0)
        )
        b.card_hours += card_h
        b.pflop_hours += pflop_h
        if cost is None:
            b.unpriced_card_hours += card_h
        else:
            b.cost += cost
    return UsageOut(
        month=month, currency=prices.currency if prices else None, rows=rows, bills=list(bills.values())
    )


def router(db: Callable, principal: Callable, admin: Callable) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/usage", response_model=UsageOut)
    def get_usage(
        month: str | None = Query(
            None,
            pattern=r"^(19[7-9]\d|[2-9]\d{3})-(0[1-9]|1[0-2])$",
            description="YYYY-MM (UTC, 1970 on); default this month",
        ),
        tenant: str | None = Query(None, description="admins: only this tenant"),
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """Members see their own tenant's usage only; admins everyone's, or one tenant's."""
        now = time.time()
        month = month or dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m")
        tenant_id = who.tenant_id
        if who.is_admin and tenant:
            row = session.scalar(select(tables.Tenant).where(tables.Tenant.name == tenant))
            if row is None:
                raise HTTPException(404, f"no tenant {tenant!r}")
            tenant_id = row.id
        return usage(session, month, tenant_id, now)

    @api.get("/v1/prices", response_model=PriceTable | None)
    def get_prices(_: Principal = Depends(principal), session: Session = Depends(db)):
        return current_prices(session)

    @api.put("/v1/prices", response_model=PriceTable)
    def put_prices(body: PriceTable, who: Principal = Depends(admin), session: Session = Depends(db)):
        session.add(
            tables.PriceDocument(
                body=body.model_dump(mode="json"), applied_at=time.time(), applied_by=who.user_id
            )
        )
        session.commit()
        return body

    return api
