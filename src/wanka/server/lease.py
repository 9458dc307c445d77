"""One scheduler per database: a lease row with a fencing epoch.

Every server on a database serves the API; only the holder of the lease runs the control loop's
decisions. The holder renews the lease inside every transaction that records a decision
(:meth:`SchedulerLease.fence`), with a compare-and-set on its epoch: once a standby has taken the
lease over (a higher epoch), the old holder's next transaction matches no row, is rolled back, and
the old holder steps down. So no two servers can both commit decisions for the same epoch, on
SQLite (one writer at a time) or PostgreSQL (the row lock orders the two updates).

A standby takes the lease when it has expired: ``ttl_s`` after the holder's last renewal, which a
live holder makes at least every ``ttl_s / 3``. Clocks of the servers must agree to well within
``ttl_s`` (one machine, or NTP). The same scheme as Kubernetes' leader election (a Lease object with
a holder, a renew time and transitions), with the epoch as the fencing token Kleppmann describes
("How to do distributed locking", 2016).
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wanka.server.tables import SchedulerLease as LeaseRow

LEASE_ID = 1
TTL_S = 8.0  # a standby takes over within TTL_S (+ one poll) of the leader's last renewal


class LeaseLost(RuntimeError):
    """Another server holds the scheduler lease now: roll back and stand by."""


class SchedulerLease:
    """This server's claim on the lease. Not thread-safe: the control loop's thread uses it."""

    def __init__(self, ttl_s: float = TTL_S, holder: str | None = None):
        self.ttl_s = ttl_s
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:128]
        self.epoch: int | None = None  # the epoch this server holds, or None
        self.renewed_at = 0.0

    @property
    def held(self) -> bool:
        return self.epoch is not None

    def try_acquire(self, session: Session) -> bool:
        """Take the lease if it is free or expired (commits). True when this server holds it."""
        now = time.time()
        row = session.execute(
            select(LeaseRow.holder, LeaseRow.epoch, LeaseRow.expires_at).where(LeaseRow.id == LEASE_ID)
        ).first()
        if row is None:
            try:
                session.execute(
                    insert(LeaseRow).values(
                        id=LEASE_ID, holder=self.holder, epoch=1, expires_at=now + self.ttl_s
                    )
                )
                session.commit()
            except IntegrityError:  # another server inserted it first
                session.rollback()
                return False
            self.epoch, self.renewed_at = 1, now
            return True
        if row.holder != self.holder and row.expires_at > now:
            session.rollback()
            return False
        taken = session.execute(
            update(LeaseRow)
            .where(LeaseRow.id == LEASE_ID, LeaseRow.epoch == row.epoch)
            .values(holder=self.holder, epoch=row.epoch + 1, expires_at=now + self.ttl_s)
        ).rowcount
        session.commit()
        if taken:
            self.epoch, self.renewed_at = row.epoch + 1, now
        return bool(taken)

    def fence(self, session: Session) -> None:
        """Renew the lease in ``session``'s transaction, before it commits; raises LeaseLost (the
        caller rolls back) when another server has taken it."""
        if self.epoch is None:
            raise LeaseLost("this server does not hold the scheduler lease")
        now = time.time()
        renewed = session.execute(
            update(LeaseRow)
            .where(
                LeaseRow.id == LEASE_ID,
                LeaseRow.holder == self.holder,
                LeaseRow.epoch == self.epoch,
            )
            .values(expires_at=now + self.ttl_s)
        ).rowcount
        if not renewed:
            self.epoch = None
            raise LeaseLost("another server took the scheduler lease")
        self.renewed_at = now

    def due(self) -> bool:
        """Whether a renewal is due even without decisions to record."""
        return time.time() - self.renewed_at > self.ttl_s / 3

    def release(self, session: Session) -> None:
        """Let a standby take over at once (a clean shutdown)."""
        if self.epoch is None:
            return
        session.execute(
            update(LeaseRow)
            .where(LeaseRow.id == LEASE_ID, LeaseRow.epoch == self.epoch)
            .values(expires_at=0.0)
        )
        session.commit()
        self.epoch = None
