"""The control plane's tables (SQLAlchemy 2). Times are UNIX seconds (float): one representation on
SQLite and PostgreSQL, and what the core's jobs use. Schema changes go through Alembic
(``server/migrations``); never ``create_all`` outside tests of the migrations themselves."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# 64-bit ids in PostgreSQL (migration 0002); SQLite's INTEGER PRIMARY KEY is 64-bit already, and only
# that exact type is its auto-incrementing rowid
ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    """An organisation that rents cards: its users, jobs and bills belong to it."""

    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    disabled_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # its users' tokens stop


class User(Base):
    """A person or robot with tokens. ``admin`` operates the centre (no tenant); ``member`` acts
    for exactly one tenant."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    disabled_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # its tokens stop working


class Token(Base):
    """An API token. Only its SHA-256 is stored (tokens are 256-bit random, so a slow hash adds
    nothing); ``prefix`` lets people tell their tokens apart without revealing them."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # null: never
    # a console session's: the API token it was signed in with (the session ends with it)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id"), nullable=True)


class QuotaDocument(Base):
    """Every quota tree applied (the YAML of models.quota); the newest is in force."""

    __tablename__ = "quota_documents"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    body: Mapped[dict] = mapped_column(JSON)
    applied_at: Mapped[float] = mapped_column(Float)
    applied_by: Mapped[int] = mapped_column(ForeignKey("users.id"))


class Node(Base):
    """A node of the cluster (from the cluster spec or the backend's inventory) and its state."""

    __tablename__ = "nodes"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="up")
    reason: Mapped[str] = mapped_column(String(500), default="")
    changed_at: Mapped[float] = mapped_column(Float)


class NodeEvent(Base):
    """Every change of a node's state, for the audit stream: who drained it, what check found it
    unhealthy, when the inventory lost it."""

    __tablename__ = "node_events"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    node: Mapped[str] = mapped_column(String(128))
    time: Mapped[float] = mapped_column(Float, index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500), default="")
    by: Mapped[str] = mapped_column(String(64))


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    queue: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    spec: Mapped[dict] = mapped_column(JSON)  # the validated job spec, as submitted
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    cards: Mapped[int] = mapped_column(Integer)  # at full size
    submit_time: Mapped[float] = mapped_column(Float)
    start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    placement: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)  # launches so far (restarts included)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # runs that failed (restart budget)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # who, for the final record
    # the client's key for this submission: a retry with it gets this job back (unique per tenant)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    held_by: Mapped[str | None] = mapped_column(String(16), nullable=True)  # user, admin; null: scheduler
    # an element of a job array: the array's id (its first element's), the index, the array's %N
    array_job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    array_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    array_max_running: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # a replica of a service: the service, the spec generation it runs, where the gateway reaches it
    service_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    service_generation: Mapped[int | None] = mapped_column(Integer, nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(300), nullable=True)  # host:port, set at launch

    __table_args__ = (
        Index("ix_jobs_tenant_id_id", "tenant_id", "id"),  # a tenant's listing, newest first
        Index("ix_jobs_service_id", "service_id"),
        Index("ix_jobs_tenant_id_idempotency_key", "tenant_id", "idempotency_key", unique=True),
        Index("ix_jobs_array_job_id", "array_job_id"),
        Index("ix_jobs_state", "state"),  # the control loop's pending and running sets
        Index("ix_jobs_tenant_id_state", "tenant_id", "state"),  # a tenant's waiting jobs, counted
    )


class Service(Base):
    """A service (models.service): its spec, the generation of that spec (+1 on every change
    that replaces replicas), and the replica count the autoscaler last set. Its replicas are
    jobs with its ``service_id``; a deleted service's row goes when its last replica has ended."""

    __tablename__ = "services"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))  # who applied it last: replicas are theirs
    name: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(Integer)
    desired: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")  # the autoscaler's last decision, in words
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # its replicas are stopping

    __table_args__ = (
        Index("ix_services_tenant_id_name", "tenant_id", "name", unique=True),
        {"sqlite_autoincrement": True},  # ids never reused: events and replicas keep their service's
    )


class ServiceEvent(Base):
    """What happened to a service and why: applied, scaled, replicas started, stopped, rolled."""

    __tablename__ = "service_events"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    service_id: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(String(1000))

    __table_args__ = (Index("ix_service_events_service_id_id", "service_id", "id"),)


class QueueHold(Base):
    """A queue an admin holds: its jobs wait however much is free (running ones run on)."""

    __tablename__ = "queue_holds"
    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    held_at: Mapped[float] = mapped_column(Float)
    held_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(500), default="")


class JobEvent(Base):
    """Every state change of a job, with when and why."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    time: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")


class JobRun(Base):
    """One run of a job on its cards: what metering bills. ``end`` is null while it runs."""

    __tablename__ = "job_runs"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    run: Mapped[int] = mapped_column(Integer)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    queue: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    cards: Mapped[int] = mapped_column(Integer)
    tflops_per_card: Mapped[float] = mapped_column(Float)  # the card's rated (half-precision) peak
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_job_runs_job_id_run", "job_id", "run", unique=True),
        Index("ix_job_runs_tenant_id_start", "tenant_id", "start"),
    )


class TaskRun(Base):
    """How one task of one run ended (written when the run ends): what ``wanka acct`` shows per
    task, as sacct does per step."""

    __tablename__ = "task_runs"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    run: Mapped[int] = mapped_column(Integer)
    task: Mapped[int] = mapped_column(Integer)  # RANK
    role: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(128))
    cards: Mapped[int] = mapped_column(Integer)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)  # null: killed or lost
    max_rss_kib: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # completed, failed, cancelled, timeout, preempted, node_fail, resized, lost (loop.task_state)
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)

    __table_args__ = (Index("ix_task_runs_job_id_run_task", "job_id", "run", "task", unique=True),)


class PriceDocument(Base):
    """Every price table applied (price per card-hour by accelerator model). Each is in force from
    ``effective_from`` until the next one's: a change never re-prices the past."""

    __tablename__ = "price_documents"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    body: Mapped[dict] = mapped_column(JSON)
    applied_at: Mapped[float] = mapped_column(Float)
    applied_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    effective_from: Mapped[float | None] = mapped_column(Float, nullable=True)


class SchedulerLease(Base):
    """The right to schedule: one row, held by one server at a time. The holder renews
    ``expires_at`` in every transaction that records decisions, guarded by its ``epoch`` (a fencing
    token): once another server has taken the lease, the old holder's writes match no row."""

    __tablename__ = "scheduler_lease"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float)
