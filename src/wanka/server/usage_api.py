"""Metering and billing: card-hours and PFLOP-hours per tenant, queue, accelerator model and day
(UTC), and a price table that turns them into a bill.

Usage is computed from job runs (``job_runs``): a run holds its cards from admission until its
processes are gone, which is what the tenant was given and what a compute centre bills. A run still
going counts up to now.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import time
from bisect import bisect_right
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from wanka.models.bounds import MAX_TIME, Text
from wanka.models.hardware import default_catalog
from wanka.server import tables
from wanka.server.auth import Principal

DAY = 86400.0


Price = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]


class PriceTable(BaseModel):
    """Price per card-hour by accelerator model, in one currency, from ``effective_from`` on.

    Models may be named by catalog id, name or alias; they are stored under the catalog's id, which
    is what metering records (so a price is never keyed by a name nothing matches)."""

    model_config = ConfigDict(extra="forbid")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. CNY")
    card_hour: dict[Text, Price] = Field(
        max_length=256, description="accelerator model -> price of one card-hour (finite, 0 to 1e9)"
    )
    effective_from: float | None = Field(
        default=None,
        ge=0,
        le=MAX_TIME,
        allow_inf_nan=False,
        description="UNIX seconds from which these prices apply (default: when applied; never in the "
        "past, so bills already run up do not move)",
    )

    @field_validator("card_hour")
    @classmethod
    def _canonical(cls, v: dict[str, float]) -> dict[str, float]:
        catalog = default_catalog()
        out: dict[str, float] = {}
        for name, price in v.items():
            try:
                model = catalog.get(name).id
            except Exception:
                raise ValueError(
                    f"unknown accelerator model {name!r}; known: {', '.join(catalog.ids())}"
                ) from None
            if model in out:
                raise ValueError(f"{name!r} and another key both name {model}; give each model once")
            out[model] = price
        return out


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
    month: str = Field(description="the month, or FROM..TO (UTC days, both included)")
    start: float = Field(default=0.0, description="UNIX seconds the figures start at")
    end: float = Field(default=0.0, description="UNIX seconds they end at (excluded)")
    currency: str | None
    rows: list[UsageRow]
    bills: list[TenantBill]


DATE = r"^(19[7-9]\d|[2-9]\d{3})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
MAX_DAYS = 366  # one request's range: each run is split per day


def month_bounds(month: str) -> tuple[float, float, str]:
    year, mon = (int(x) for x in month.split("-"))
    start = calendar.timegm((year, mon, 1, 0, 0, 0))
    days = calendar.monthrange(year, mon)[1]
    return float(start), float(start + days * DAY), month


def day_bounds(first: str | None, last: str | None, now: float) -> tuple[float, float, str]:
    """[first 00:00, last + 1 day 00:00) UTC; first defaults to the first of last's month, last to
    today. 422 for a date that does not exist, a range backwards or longer than MAX_DAYS."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    try:
        end_day = dt.date.fromisoformat(last) if last else today
        start_day = dt.date.fromisoformat(first) if first else end_day.replace(day=1)
    except ValueError as exc:
        raise HTTPException(422, [{"field": "from" if first else "to", "message": str(exc)}]) from None
    days = (end_day - start_day).days + 1
    if not 1 <= days <= MAX_DAYS:
        raise HTTPException(
            422,
            [{"field": "to", "message": f"from {start_day} to {end_day}: 1 to {MAX_DAYS} days, in order"}],
        )
    lo = calendar.timegm(start_day.timetuple())
    return float(lo), float(lo + days * DAY), f"{start_day}..{end_day}"


def price_timeline(session: Session) -> list[tuple[float, PriceTable]]:
    """Every price table with the time it takes effect, in order; each is in force until the next.
    Of two with the same time, the one applied later."""
    docs = session.scalars(
        select(tables.PriceDocument).order_by(tables.PriceDocument.effective_from, tables.PriceDocument.id)
    )
    out: list[tuple[float, PriceTable]] = []
    for doc in docs:
        at = doc.effective_from if doc.effective_from is not None else doc.applied_at
        table = PriceTable.model_validate({**doc.body, "effective_from": at})
        if out and out[-1][0] == at:
            out.pop()
        out.append((at, table))
    return out


def prices_at(timeline: list[tuple[float, PriceTable]], t: float) -> tuple[PriceTable | None, float]:
    """The table in force at ``t`` and when the next one takes over (inf: none does)."""
    i = bisect_right([at for at, _ in timeline], t)
    following = timeline[i][0] if i < len(timeline) else math.inf
    return (timeline[i - 1][1] if i else None), following


def current_prices(session: Session) -> PriceTable | None:
    return prices_at(price_timeline(session), time.time())[0]


def usage(session: Session, bounds: tuple[float, float, str], tenant_id: int | None, now: float) -> UsageOut:
    lo, hi, label = bounds
    q = (
        select(tables.JobRun, tables.Tenant.name)
        .join(tables.Tenant)
        .where(tables.JobRun.start < hi, or_(tables.JobRun.end.is_(None), tables.JobRun.end > lo))
    )
    if tenant_id is not None:
        q = q.where(tables.JobRun.tenant_id == tenant_id)
    timeline = price_timeline(session)
    # (tenant, queue, model, day) -> [card-hours, PFLOP-hours, cost, unpriced card-hours]
    cells: dict[tuple[str, str, str, str], list[float]] = {}
    for run, tenant in session.execute(q):
        begin, end = max(run.start, lo), min(run.end if run.end is not None else now, hi)
        t = begin
        while t < end:  # split at UTC midnights and where another price table takes over
            table, next_price = prices_at(timeline, t)
            piece_end = min(end, (t // DAY + 1) * DAY, next_price)
            day = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")
            cell = cells.setdefault((tenant, run.queue, run.model, day), [0.0, 0.0, 0.0, 0.0])
            hours = run.cards * (piece_end - t) / 3600.0
            cell[0] += hours
            cell[1] += hours * run.tflops_per_card / 1000.0
            price = table.card_hour.get(run.model) if table else None
            if price is None:
                cell[3] += hours
            else:
                cell[2] += hours * price
            t = piece_end
    rows, bills = [], {}
    for (tenant, queue, model, day), (card_h, pflop_h, cost, unpriced_h) in sorted(cells.items()):
        rows.append(
            UsageRow(
                tenant=tenant,
                queue=queue,
                model=model,
                day=day,
                card_hours=card_h,
                pflop_hours=pflop_h,
                cost=None if unpriced_h >= card_h else cost,
            )
        )
        b = bills.setdefault(
            tenant, TenantBill(tenant=tenant, card_hours=0, pflop_hours=0, cost=0, unpriced_card_hours=0)
        )
        b.card_hours += card_h
        b.pflop_hours += pflop_h
        b.cost += cost
        b.unpriced_card_hours += unpriced_h
    current = prices_at(timeline, min(now, hi - 1))[0]
    return UsageOut(
        month=label,
        start=lo,
        end=hi,
        currency=current.currency if current else None,
        rows=rows,
        bills=list(bills.values()),
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
        first_day: str | None = Query(
            None,
            alias="from",
            pattern=DATE,
            description="YYYY-MM-DD (UTC): from this day on, instead of a month",
        ),
        last_day: str | None = Query(
            None, alias="to", pattern=DATE, description="YYYY-MM-DD (UTC): to this day, included"
        ),
        tenant: str | None = Query(None, description="admins: only this tenant"),
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """Members see their own tenant's usage only; admins everyone's, or one tenant's."""
        now = time.time()
        if (first_day or last_day) and month:
            raise HTTPException(
                422, [{"field": "month", "message": "give a month, or from and to, not both"}]
            )
        if first_day or last_day:
            bounds = day_bounds(first_day, last_day, now)
        else:
            bounds = month_bounds(month or dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m"))
        tenant_id = who.tenant_id
        if who.is_admin and tenant:
            row = session.scalar(select(tables.Tenant).where(tables.Tenant.name == tenant))
            if row is None:
                raise HTTPException(404, f"no tenant {tenant!r}")
            tenant_id = row.id
        return usage(session, bounds, tenant_id, now)

    @api.get("/v1/prices", response_model=PriceTable | None)
    def get_prices(_: Principal = Depends(principal), session: Session = Depends(db)):
        return current_prices(session)

    @api.put("/v1/prices", response_model=PriceTable)
    def put_prices(body: PriceTable, who: Principal = Depends(admin), session: Session = Depends(db)):
        """A new price table, in force from ``effective_from`` (default now) until the next one."""
        return apply_prices(session, who, body)

    return api


def apply_prices(session: Session, who: Principal, body: PriceTable) -> PriceTable:
    """A new price table, in force from ``effective_from`` (default now, never in the past) until
    the next one, in the currency of those before (422 naming the field otherwise)."""
    now = time.time()
    if body.effective_from is not None and body.effective_from < now - 1:
        raise HTTPException(
            422,
            [
                {
                    "field": "effective_from",
                    "message": f"{body.effective_from} is in the past (now {now:.0f}); prices apply "
                    "from now on, so bills already run up do not move",
                }
            ],
        )
    timeline = price_timeline(session)
    if timeline and timeline[-1][1].currency != body.currency:
        raise HTTPException(
            422,
            [
                {
                    "field": "currency",
                    "message": f"bills are in {timeline[-1][1].currency}; every price table uses it",
                }
            ],
        )
    body = body.model_copy(update={"effective_from": body.effective_from or now})
    session.add(
        tables.PriceDocument(
            body=body.model_dump(mode="json", exclude={"effective_from"}),
            applied_at=now,
            applied_by=who.user_id,
            effective_from=body.effective_from,
        )
    )
    session.commit()
    return body
