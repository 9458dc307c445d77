"""The control loop: database → snapshot → ``core.run_cycle`` → decisions → database → backend →
reconcile. It runs in one thread of the server and is the only writer of job state transitions
besides the API's submit and its cancel of a waiting job. Of several servers on one database, only
the holder of the scheduler lease runs it (``server/lease.py``; every commit of decisions is fenced
by it); the others stand by and take over, as a restarted server does, when the lease expires.

The database is the truth; what the loop keeps in memory (the core's indexes, the cards in use) is
rebuilt from it on start. Each tick:

1. take in what the API did (jobs submitted, waiting jobs cancelled; once a second, also what other
   servers' APIs wrote);
2. reconcile what the backend reports: tasks running, ended, lost; stop what must stop (cancel
   requests, time limits, failed gangs) — SIGTERM, then SIGKILL after the grace period;
3. commit that; run a cycle over the kept indexes (a cycle that raises has the waiting job that
   causes it held, and runs again without it); record every decision and transition in one
   transaction, with compare-and-set updates so a job cancelled meanwhile is never started;
4. hand the new placements to the backend, and publish queue positions and estimated starts.

A job's processes are started only after its admission is committed, and a backend starts a task
of a run at most once, so a crash at any point never starts a job twice: on restart, admitted jobs
are launched (only what was not started), running ones adopted, and how the others ended is read
from what the backend recorded.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from prometheus_client import Counter, Histogram
from sqlalchemy import delete, event, func, insert, or_, select, update
from sqlalchemy.orm import sessionmaker

from wanka.backends.base import Backend, BackendUnavailable, Launch, TaskState, TaskStatus, task_launches
from wanka.core import (
    LAS_ORDERS,
    PRIORITY_CLASSES,
    Action,
    Cluster,
    ClusterState,
    CycleConfig,
    GroupPlacement,
    Job,
    JobKind,
    JobState,
    NodeState,
    PendingIndex,
    Placement,
    QueueUsage,
    RunningIndex,
    Snapshot,
    TaskGroup,
    accrue,
    run_cycle,
)
from wanka.core.decisions import Fit, StopReason
from wanka.core.fairshare import decayed_use
from wanka.core.jobs import check_transition
from wanka.core.running import effective_time_limit
from wanka.models.cluster import parse_cluster
from wanka.server import tables
from wanka.server.cluster_api import record_node_event
from wanka.server.faults import find_culprits
from wanka.server.gates import Gates, rule_of
from wanka.server.lease import LeaseLost, SchedulerLease
from wanka.server.limits import Limits

log = logging.getLogger("wanka.loop")

#: A job in these states is the control loop's: waiting, or holding cards.
HOLDING_OR_WAITING = (JobState.PENDING, JobState.ADMITTED, JobState.RUNNING, JobState.PREEMPTED)

MIN_GAP_S = 0.02  # between ticks: bursts of API calls are taken together
CYCLE_EVERY_S = 5.0  # a cycle at least this often, even when nothing changed
POSITIONS_EVERY_S = 1.0  # queue positions listed at most this often when many jobs wait
FOLLOW_EVERY_S = 1.0  # how often the leader looks for what other servers' APIs wrote
STANDBY_POLL_S = 1.0  # how often a standby tries for the scheduler lease
HALF_LIFE_S = 7 * 86400.0  # fair-share memory: a week, as Slurm's default PriorityDecayHalfLife
CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Stopping:
    """Why a job's processes are being stopped, and what it becomes once they are gone."""

    target: JobState  # CANCELLED, FAILED, or PENDING (requeued)
    reason: str
    since: float  # when wanka asked the tasks to stop
    kill_at: float  # SIGKILL whatever is left then
    kind: str  # what a task it stopped ended as (TaskRun.state): cancelled, timeout, preempted, ...
    failure: bool = False  # counts against the restart budget
    killed: bool = False
    shrink_to: Placement | None = None  # gave surplus back: restart at this smaller placement


@dataclass
class Active:
    """A job that holds cards or whose processes still run: from admission until they are gone."""

    job: Job
    run: int
    tasks: int
    placement: Placement
    state: JobState  # as recorded: ADMITTED, RUNNING or PREEMPTED
    launched: bool = False
    in_core: bool = True  # holds cards in the core's view (False once the core stopped it)
    stopping: Stopping | None = None
    restarts: int = 0  # the job's restart budget
    failures: int = 0
    served_before: float = 0.0  # card-seconds of the job's earlier runs (LAS orders rank by them)
    endpoint: str | None = None  # a service's replica: where this run listens (host:port, unix:PATH)


def placement_to_json(cluster: Cluster, p: Placement) -> dict:
    return {
        "model": p.model,
        "groups": [
            {
                "role": g.role,
                "nodes": [cluster.node_names[n] for n in g.nodes],
                "masks": list(g.masks),
                "cards_per_task": g.cards_per_task,
                "cpus": g.cpus,
                "memory_gib": g.memory_gib,
            }
            for g in p.groups
        ],
    }


def placement_from_json(cluster: Cluster, d: dict) -> Placement:
    """Raises KeyError when a node of the placement is no longer in the cluster."""
    return Placement(
        d["model"],
        tuple(
            GroupPlacement(
                g["role"],
                tuple(cluster.node_index[n] for n in g["nodes"]),
                tuple(g["masks"]),
                g["cards_per_task"],
                g["cpus"],
                g["memory_gib"],
            )
            for g in d["groups"]
        ),
    )


# every task's environment unless the job's env says otherwise: Python's print() reaches the log as
# it is written, not when its buffer fills or the task exits (`wanka logs -f` shows it live)
TASK_ENV_DEFAULTS = {"PYTHONUNBUFFERED": "1"}


# what the loop reads of a waiting job: what the core needs, and what the gates judge it by
WAITING_COLUMNS = (
    tables.Job.id,
    tables.Job.spec,
    tables.Job.queue,
    tables.Job.submit_time,
    tables.Job.service_id,
    tables.Job.array_job_id,
    tables.Job.array_max_running,
    tables.Job.user_id,
)


def _array_env(array_job_id: int | None, index: int | None) -> dict[str, str]:
    """An array element's own variables (a job's env cannot set WANKA_* names)."""
    if array_job_id is None:
        return {}
    return {"WANKA_ARRAY_JOB_ID": str(array_job_id), "WANKA_ARRAY_INDEX": str(index)}


def core_job(job_id: int, spec: dict, queue: str, submit_time: float, service_id: int | None = None) -> Job:
    """The core's view of a stored, already validated spec (no second validation: restart speed);
    ``service_id``: the service whose replica the service keeper submitted it as (``jobs.service_id``)."""
    pc = PRIORITY_CLASSES[spec.get("priority_class", "normal")]
    groups = tuple(
        TaskGroup(
            g.get("role", "worker"),
            g.get("replicas", 1),
            g.get("cards", 1),
            tuple(g.get("accelerators", ())),
            g.get("cpus", 0),
            g.get("memory_gib", 0),
            g.get("min_replicas"),
            g.get("tasks_per_node"),
        )
        for g in spec["task_groups"]
    )
    preemptible = spec.get("preemptible")
    return Job(
        id=str(job_id),
        tenant=spec.get("tenant", ""),
        queue=queue,
        groups=groups,
        name=spec.get("name", ""),
        priority=pc.value,
        priority_class=pc.name,
        kind=JobKind(spec.get("kind", "training")),
        time_limit_s=spec.get("time_limit_s"),
        preemptible=pc.preemptible if preemptible is None else preemptible,
        checkpoint_interval_s=spec.get("checkpoint_interval_s"),
        submit_time=submit_time,
        service=None if service_id is None else str(service_id),
    )


def past_usage(session, leaves: list[str], now: float) -> dict[str, QueueUsage]:
    """Each leaf queue's decayed compute use at ``now`` from the runs on record
    (:func:`wanka.core.fairshare.decayed_use` of each; a run still open counts up to ``now``). Runs
    that ended over ten half-lives ago weigh under 0.1 % and are not read. CPU and memory use are
    not recorded per run: they start from zero."""
    usage = {q: QueueUsage(as_of=now) for q in leaves}
    run = tables.JobRun
    rows = session.execute(
        select(run.queue, run.cards, run.tflops_per_card, run.start, run.end).where(
            run.queue.in_(leaves), or_(run.end.is_(None), run.end > now - 10 * HALF_LIFE_S)
        )
    )
    compute: dict[str, float] = {}
    for queue, cards, tflops, start, end in rows:
        end = now if end is None else min(end, now)
        rate = cards * tflops / 1e3  # PFLOPS, as the ticks book it
        compute[queue] = compute.get(queue, 0.0) + decayed_use(rate, start, end, now, HALF_LIFE_S)
    for queue, value in compute.items():
        usage[queue] = QueueUsage(compute=value, as_of=now)
    return usage


def server_policy(policy: CycleConfig) -> CycleConfig:
    """The preset without live resizing: a running process gang cannot change size in place (an
    elastic job starts at the size the core gives it and keeps it)."""
    return policy.with_(actions=tuple(a for a in policy.actions if a is not Action.RESIZE))


class ControlLoop:
    def __init__(
        self,
        sessions: sessionmaker,
        cluster: Cluster,
        backend: Backend,
        policy: CycleConfig,
        tree_of,
        interval_s: float = 1.0,
        grace_s: float = 10.0,
        health_every_s: float = 10.0,
        inventory: dict | None = None,
        on_cluster_change: Callable[[], None] = lambda: None,
        limits: Limits | None = None,
        lease: SchedulerLease | None = None,
    ):
        self.sessions, self.cluster, self.backend = _tracking_writes(sessions), cluster, backend
        self.lease = lease or SchedulerLease()
        # the backend's inventory the cluster was built from; followed while the server runs
        # (None: the operator gave the cluster, or the backend's never changes)
        self.inventory = _shape(inventory) if inventory and backend.inventory_may_change else None
        self.on_cluster_change = on_cluster_change  # the API's caches of cluster-derived verdicts
        self.policy = server_policy(policy)
        self.limits = limits or Limits()
        self.parked: dict[str, Job] = {}  # waiting, kept out of cycles by the tenant's task cap
        self.gates = Gates()  # waiting, kept out of cycles until eligible (dependencies, throttles)
        self.held_queues: dict[str, str] = {}  # queue an admin holds -> why; its jobs wait in queue_parked
        self.queue_parked: dict[str, Job] = {}
        self._queues_checked = 0.0
        self.unindexable: dict[int, Exception] = {}  # waiting jobs the core's index refused
        self.tree_of = tree_of  # session -> the quota tree in force
        self.wake = threading.Event()
        backend.on_change = self.wake.set  # a task ended: reconcile now, not at the next period
        self.interval_s, self.grace_s, self.health_every_s = interval_s, grace_s, health_every_s
        self.inbox: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        # published for the API after every cycle (replaced whole: readers never see half of one)
        self.positions: dict[int, int] = {}
        self.estimates: dict[int, float] = {}
        self.last_cycle: float | None = None
        self.tick_error: str | None = None  # why the last tick failed; None once one succeeds
        self.tree_error: str | None = None  # why the tree in force cannot be used (the last good one is)
        self.recent_cycles: deque[tuple[float, float]] = deque(maxlen=300)  # (when, seconds): the console
        self.cycle_count = 0  # cycles run and decisions made since this server started
        self.decision_count = 0
        self.cycle_seconds = Histogram(
            "wanka_cycle_seconds", "Scheduling cycle latency", buckets=CYCLE_BUCKETS, registry=None
        )
        self.decisions = Counter(
            "wanka_decisions", "Decisions made by scheduling cycles", ["kind"], registry=None
        )
        self.cycles = Counter("wanka_cycles", "Scheduling cycles run", registry=None)
        self.held = Counter(
            "wanka_jobs_held", "Jobs held by the control loop, by why", ["reason"], registry=None
        )
        self.per_cycle = Histogram(
            "wanka_cycle_decisions",
            "Decisions (starts and stops) per scheduling cycle",
            buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=None,
        )
        self._next_health = 0.0
        self._unavailable_said = -1e9
        self.dirty = True  # something changed since the last cycle
        self._last_tick = 0.0
        self._positions_at = 0.0
        self._next_follow = 0.0
        self._seen: tuple | None = None  # (newest quota document, newest tenant, newest node change)
        self.services = None  # server.service_keeper.ServiceKeeper: services' replicas, each tick
        self.intake = None  # server.k8s_intake.KubeIntake: others' Kubernetes pods as jobs, each tick
        self._stand_by()
        self._lead()  # the first server on a database schedules from the start

    @property
    def role(self) -> str:
        """``leader`` (this server schedules) or ``standby`` (it serves the API and waits)."""
        return "leader" if self.lease.held else "standby"

    def _stand_by(self) -> None:
        """Hold nothing: another server schedules (its tasks run on; it adopts them)."""
        self.pending: PendingIndex | list = []
        self.active: dict[int, Active] = {}
        self.running: dict[str, Job] = {}
        self.parked, self.unindexable = {}, {}
        self.gates = Gates()
        self.held_queues, self.queue_parked = {}, {}
        self.positions, self.estimates = {}, {}
        self.outcomes: dict[int, Fit] = {}  # waiting job -> how close the last cycle came
        self.reserved: set[int] = set()  # waiting jobs holding a reservation

    def _lead(self) -> bool:
        """Take the scheduler lease if it is free; then rebuild from the database and adopt what
        runs, as a restarted server does."""
        with self.sessions() as session:
            if not self.lease.try_acquire(session):
                return False
        self.backend.adopt()
        self.load()
        log.info("this server schedules now (lease epoch %d)", self.lease.epoch)
        return True

    def _commit(self, session) -> None:
        """Commit what the loop decided, fenced by the lease (raises LeaseLost, rolled back, when
        another server schedules now). A transaction that wrote nothing renews the lease only when
        due: an idle tick takes no write lock (SQLite has one writer, shared with the API)."""
        session.flush()  # ORM changes count as writes too
        if session.info.pop("wrote", False) or self.lease.due():
            self.lease.fence(session)
        session.commit()
        session.info.pop("wrote", None)

    # --- state from the database ---------------------------------------------------------------

    def load(self) -> None:
        """On start: rebuild the in-memory state from the database, launch what was admitted but
        maybe not started, and adopt what runs."""
        with self.sessions() as session:
            self.tree = self.tree_of(session)
            rows = session.execute(
                select(
                    tables.Job.id,
                    tables.Job.spec,
                    tables.Job.queue,
                    tables.Job.submit_time,
                    tables.Job.state,
                    tables.Job.start_time,
                    tables.Job.placement,
                    tables.Job.runs,
                    tables.Job.failures,
                    tables.Job.cancel_requested,
                    tables.Job.cancel_reason,
                    tables.Job.service_id,
                    tables.Job.array_job_id,
                    tables.Job.array_max_running,
                    tables.Job.user_id,
                ).where(tables.Job.state.in_([s.value for s in HOLDING_OR_WAITING]))
            ).all()
            served = self._past_service(session)
            leaves = [n for n in self.tree.names if self.tree.is_leaf(n)]
            now = time.time()
            # fair-share memory outlives the server (a restart or a failover must not forgive a
            # tenant its week): rebuilt from the runs on record
            self.usage = past_usage(session, leaves, now)
        self.state = ClusterState.empty(self.cluster)
        self.running: dict[str, Job] = {}
        self.index = RunningIndex(self.cluster, self.tree, self.policy.default_time_limit_s)
        self.active: dict[int, Active] = {}
        self.busy: dict[int, int] = {}  # node -> cards still in use by jobs the core already stopped
        waiting: list[Job] = []
        lost: list[tuple[int, str]] = []
        unadmitted: list[int] = []
        self.gates = Gates()
        # jobs whose processes may exist first, admitted ones after: an admitted job's cards may
        # still be held by one the core had stopped when the server went down (that stop is not
        # recorded), and the job that holds them wins
        rows = sorted(rows, key=lambda r: r[4] == JobState.ADMITTED.value)
        for (
            job_id,
            spec,
            queue,
            submit,
            state,
            start,
            placement,
            runs,
            failures,
            cancel,
            why,
            service,
            *gate,
        ) in rows:
            job = core_job(job_id, spec, queue, submit, service)
            job.attained_service = served.get(job_id, 0.0)
            state = JobState(state)
            if state is JobState.PENDING:
                rule = rule_of(spec, *gate)
                if rule is None:
                    waiting.append(job)
                else:
                    self.gates.hold_back(job, rule)
                continue
            try:
                p = placement_from_json(self.cluster, placement)
            except (KeyError, TypeError):
                lost.append((job_id, "its nodes are no longer in the cluster"))
                if state is not JobState.ADMITTED:  # its tasks may run still, on nodes that remain:
                    # stopped now, before any cycle gives their cards to another job
                    self.backend.signal(job_id, runs, signal.SIGTERM)  # (adopted processes too)
                    self.backend.signal(job_id, runs, signal.SIGKILL)
                continue
            if state is JobState.ADMITTED:
                try:
                    self.state.allocate(p)
                except ValueError:  # held by a job still running: it waits again (no process yet)
                    job.state = JobState.PENDING
                    waiting.append(job)
                    unadmitted.append(job_id)
                    continue
            job.placement, job.start_time, job.state = p, start, state
            active = Active(
                job,
                runs,
                p.num_tasks,
                p,
                state,
                restarts=_restarts(spec),
                failures=failures,
                served_before=job.attained_service,
            )
            self.active[job_id] = active
            if state is JobState.PREEMPTED:  # the core had stopped it; its processes may linger
                active.in_core = False
                active.launched = True
                # when the stop began is not recorded: a task that ended while the server was down
                # was stopped by it all the same (since: the run's start)
                active.stopping = Stopping(
                    JobState.PENDING,
                    "preempted",
                    since=start or 0.0,
                    kill_at=now + self.grace_s,
                    kind="preempted",
                )
                self._occupy(p, +1)
                self.backend.signal(job_id, runs, signal.SIGTERM)
            else:
                if state is not JobState.ADMITTED:  # (an admitted one took its cards above)
                    self.state.allocate(p)
                self.running[job.id] = job
                self.index.add(job, now)
                # an admitted job starts (only its tasks never started) once its cards are free of
                # a stopped job's lingering processes, as at any tick (_launch_ready)
                lingering = any(
                    self.busy.get(node, 0) & mask
                    for g in p.groups
                    for node, mask in zip(g.nodes, g.masks, strict=True)
                )
                if state is JobState.ADMITTED and not lingering:
                    self._launch(active)
                active.launched = state is not JobState.ADMITTED or not lingering
                if cancel:  # cancelled before the restart; its tasks are stopped now
                    self._stop(job_id, active, JobState.CANCELLED, why or "cancelled", now)
        self.pending = PendingIndex(
            self.cluster, self.tree, self.policy.job_order, waiting, self.policy.las.thresholds
        )
        self.dirty = True
        self.known_max_id = max((r[0] for r in rows), default=0)
        if lost or unadmitted:
            with self.sessions() as session:
                for job_id, why in lost:
                    self._transition(session, job_id, None, JobState.FAILED, f"lost: {why}", now)
                for job_id in unadmitted:
                    why = "its cards were still held when the server started; waiting again"
                    self._transition(
                        session,
                        job_id,
                        JobState.ADMITTED,
                        JobState.PENDING,
                        why,
                        now,
                        placement=None,
                        start_time=None,
                    )
                    # the run its admission opened never started: it bills nothing
                    session.execute(
                        update(tables.JobRun)
                        .where(tables.JobRun.job_id == job_id, tables.JobRun.end.is_(None))
                        .values(end=tables.JobRun.start)
                    )
                self._commit(session)
        log.info("loaded %d waiting and %d active jobs", len(self.pending), len(self.active))

    # --- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="wanka-control-loop", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
        try:  # a standby takes over at once, not after the lease expires
            with self.sessions() as session:
                self.lease.release(session)
        except Exception:
            log.exception("could not release the scheduler lease; a standby takes over when it expires")

    def notify(self, kind: str, job_id: int) -> None:
        """From the API, after its transaction committed: ``submitted`` or ``cancelled``."""
        self.inbox.put((kind, job_id))
        self.wake.set()

    def _run(self) -> None:
        while not self.stopped.is_set():
            if not self.lease.held:  # standby: try for the lease now and then
                if self.stopped.wait(STANDBY_POLL_S):
                    break
                try:
                    self._lead()
                except Exception:
                    log.exception("taking over the scheduler lease failed; trying again")
                    self._stand_by()
                continue
            busy = any(a.stopping is not None or not a.launched for a in self.active.values())
            period = min(self.interval_s, self.lease.ttl_s / 3)  # the lease is renewed each tick
            self.wake.wait(min(period, 0.2) if busy else period)
            self.wake.clear()
            # a burst of submissions is taken in one tick, not one tick each
            gap = self._last_tick + MIN_GAP_S - time.monotonic()
            if gap > 0:
                time.sleep(gap)
            self._last_tick = time.monotonic()
            try:
                self.tick()
                self.tick_error = None
            except LeaseLost:
                log.warning("another server took the scheduler lease: standing by")
                self._stand_by()
            except BackendUnavailable as exc:  # the tick changed nothing; say so now and then
                if time.monotonic() - self._unavailable_said > 30:
                    log.warning("the %s backend cannot be reached; retrying: %s", self.backend.name, exc)
                    self._unavailable_said = time.monotonic()
            except Exception as exc:  # a bad tick must not stop scheduling; the next one retries
                log.exception("control loop tick failed")
                self.tick_error = f"{type(exc).__name__}: {exc}"[:500]  # /healthz and the console say so

    # --- one tick ------------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.time()
        self._accrue_usage(now)
        reload, submitted, cancelled = self._messages()
        if reload or self.tree_error:  # a new quota tree (or a new tenant's default queue)
            self._load_tree(now)
        self._take_in(submitted, cancelled)
        with self.sessions() as session:
            self._follow_database(session, now)
            self._reconcile(session, now)
            self._health(session, now)  # after reconcile: a broken task asks for a look at once
            self._limits(now)
            self._hold_unindexable(session, now)
            self._open_gates(session, now)
            self._commit(session)  # how tasks ended is on record whatever the cycle does
            # a cycle when something changed, and now and then anyway: estimates, fair share and
            # preemption depend on the time too
            if self.dirty or now - (self.last_cycle or 0.0) >= CYCLE_EVERY_S:
                self.dirty = False
                self._cycle(session, now)
                self._commit(session)
        self._launch_ready()
        if self.services is not None:
            self.services.tick(now)
        if self.intake is not None:
            try:
                self.intake.tick(now)
            except Exception:  # others' pods wait on: the cycle and the jobs' lifecycles go on
                log.exception("taking in Kubernetes pods failed; trying again next tick")

    def _load_tree(self, now: float) -> None:
        """:meth:`_retree`; when the tree in force cannot be loaded, scheduling goes on under the
        last good one, the load is tried again every tick, and ``tree_error`` says why (/healthz)."""
        try:
            self._retree(now)
        except Exception as exc:
            error = f"the quota tree in force cannot be used: {type(exc).__name__}: {exc}"[:500]
            if error != self.tree_error:
                log.exception(
                    "the quota tree in force cannot be used; scheduling goes on under the last good one"
                )
            self.tree_error = error
            return
        self.tree_error = None

    def _retree(self, now: float) -> None:
        """Re-index waiting and running jobs under the tree now in force; what runs, and what is
        being stopped, carries on untouched."""
        with self.sessions() as session:
            self.tree = self.tree_of(session)
        self.index = RunningIndex.build(
            self.cluster, self.tree, self.running.values(), now, self.policy.default_time_limit_s
        )
        self.pending = PendingIndex(
            self.cluster,
            self.tree,
            self.policy.job_order,
            list(self.pending.jobs),
            self.policy.las.thresholds,
        )
        leaves = [n for n in self.tree.names if self.tree.is_leaf(n)]
        self.usage = {q: self.usage.get(q, QueueUsage(as_of=now)) for q in leaves}
        self.dirty = True

    def _messages(self) -> tuple[bool, list[int], list[int]]:
        reload, submitted, cancelled = False, [], []
        while True:
            try:
                kind, job_id = self.inbox.get_nowait()
            except queue_mod.Empty:
                break
            if kind == "submitted":  # also released and requeued: waiting again
                submitted.append(job_id)
            elif kind == "cancelled":
                cancelled.append(job_id)
            elif kind in ("withdrawn", "updated"):  # held, or its spec changed while it waits
                self.parked.pop(str(job_id), None)
                self.queue_parked.pop(str(job_id), None)
                self.gates.discard(str(job_id))
                if str(job_id) in self.pending:
                    self.pending.remove(str(job_id))
                if kind == "updated":
                    submitted.append(job_id)  # indexed again from the database, as changed
            elif kind == "tree":
                reload = True
            elif kind == "queues":  # a queue held or released
                self._queues_checked = 0.0
            self.dirty = True  # "nodes": a drain or undrain changes where jobs may go
            self.gates.dirty = True  # a job cancelled, held or requeued: a dependent may go on (or never)
        return reload, submitted, cancelled

    def _take_in(self, submitted: list[int], cancelled: list[int]) -> None:
        now = time.time()
        holding = [i for i in cancelled if i in self.active]
        reasons = {}
        if holding:
            with self.sessions() as session:
                reasons = dict(
                    session.execute(
                        select(tables.Job.id, tables.Job.cancel_reason).where(tables.Job.id.in_(holding))
                    ).all()
                )
        for job_id in cancelled:
            self.parked.pop(str(job_id), None)
            self.queue_parked.pop(str(job_id), None)
            self.gates.discard(str(job_id))
            if str(job_id) in self.pending:
                self.pending.remove(str(job_id))
            a = self.active.get(job_id)
            if a is not None and a.stopping is None:  # it holds cards: stop its tasks first
                self._stop(job_id, a, JobState.CANCELLED, reasons.get(job_id) or "cancelled", now)
        # new jobs: those the API told us of, and any committed since the last look (ids may commit
        # out of order on PostgreSQL, so the notices are what guarantees none is missed)
        with self.sessions() as session:
            q = select(*WAITING_COLUMNS).where(tables.Job.state == JobState.PENDING.value)
            fresh = session.execute(q.where(tables.Job.id > self.known_max_id)).all()
            extra = [i for i in submitted if i <= self.known_max_id and str(i) not in self.pending]
            if extra:
                fresh += session.execute(q.where(tables.Job.id.in_(extra))).all()
            if any(row[2] not in self.tree.index for row in fresh):
                self._follow_tree(session, now)  # its queue came with a change another server made
        self._index(fresh)

    def _index(self, rows) -> None:
        """Waiting jobs (:data:`WAITING_COLUMNS`) into the index, or held back by the gates until
        eligible; one the core refuses is held at the next commit, with why, and the others go on."""
        for job_id, spec, queue, submit, service_id, *gate in rows:
            self.known_max_id = max(self.known_max_id, job_id)
            if (
                str(job_id) not in self.pending
                and str(job_id) not in self.gates
                and str(job_id) not in self.queue_parked
                and job_id not in self.active
            ):
                try:
                    job = core_job(job_id, spec, queue, submit, service_id)
                    rule = rule_of(spec, *gate)
                    if rule is None:
                        self.pending.add(job)
                    else:
                        self.gates.hold_back(job, rule)
                except Exception as exc:
                    log.exception("job %s cannot be indexed", job_id)
                    self.unindexable[job_id] = exc

    def _follow_database(self, session, now: float) -> None:
        """What other servers' APIs wrote (a standby serves the API too): jobs submitted or
        cancelled there, a new quota tree or tenant, drains. This server's own API also tells the
        loop at once (``notify``); this is the once-a-second catch-all."""
        if now < self._next_follow:
            return
        self._next_follow = now + FOLLOW_EVERY_S
        is_waiting = tables.Job.state == JobState.PENDING.value
        count, newest = session.execute(select(func.count(), func.max(tables.Job.id)).where(is_waiting)).one()
        kept = len(self.pending) + len(self.parked) + len(self.gates) + len(self.queue_parked)
        if count != kept or (newest or 0) > self.known_max_id:
            self._follow_waiting(session, set(session.scalars(select(tables.Job.id).where(is_waiting))))
        holding = (JobState.ADMITTED.value, JobState.RUNNING.value)
        for job_id, why in session.execute(
            select(tables.Job.id, tables.Job.cancel_reason).where(
                tables.Job.cancel_requested.is_(True), tables.Job.state.in_(holding)
            )
        ):
            a = self.active.get(job_id)
            if a is not None and a.stopping is None:
                self._stop(job_id, a, JobState.CANCELLED, why or "cancelled", now)
        self._follow_tree(session, now)

    def _follow_waiting(self, session, waiting: set[int]) -> None:
        """The index holds exactly the jobs the database has waiting (O(waiting): only when the
        counts say another server submitted or cancelled)."""
        self.gates.dirty = True  # what held-back jobs wait for may have changed too
        for job in list(self.pending.jobs):
            if int(job.id) not in waiting:  # cancelled elsewhere
                self.pending.remove(job.id)
        for job_id in [j for j in self.parked if int(j) not in waiting]:
            del self.parked[job_id]
        for job_id in [j for j in self.gates.blocked if int(j) not in waiting]:
            self.gates.discard(job_id)
        for job_id in [j for j in self.queue_parked if int(j) not in waiting]:
            del self.queue_parked[job_id]
        unknown = [
            i
            for i in waiting
            if str(i) not in self.pending
            and str(i) not in self.parked
            and str(i) not in self.gates
            and str(i) not in self.queue_parked
            and i not in self.active
        ]
        if unknown:
            self._index(session.execute(select(*WAITING_COLUMNS).where(tables.Job.id.in_(unknown))).all())

    def _follow_tree(self, session, now: float) -> None:
        """A quota document, tenant or node change written by another server: re-index under it."""
        seen = (
            session.scalar(select(func.max(tables.QuotaDocument.id))),
            session.scalar(select(func.max(tables.Tenant.id))),
            session.scalar(select(func.max(tables.Node.changed_at))),
        )
        if self._seen is not None and seen[:2] != self._seen[:2]:
            self.on_cluster_change()
            self._retree(now)
        if self._seen is not None and seen[2] != self._seen[2]:
            for name, state in session.execute(
                select(tables.Node.name, tables.Node.state).where(tables.Node.changed_at > self._seen[2])
            ):
                i = self.cluster.node_index.get(name)
                if i is not None and self.cluster.node_state[i] != int(NodeState[state.upper()]):
                    self.cluster.node_state[i] = int(NodeState[state.upper()])
                    self.dirty = True
        self._seen = seen

    def _health(self, session, now: float) -> None:
        """Nodes failing the backend's health check go down (their jobs are recovered by the
        cycle's RECOVER action); nodes it downed come back up when the check passes again."""
        if now < self._next_health:
            return
        self._next_health = now + self.health_every_s
        try:
            bad = self.backend.unhealthy_nodes(self.cluster.node_names)
        except Exception as exc:  # the backend cannot tell now (Slurm restarting, say)
            log.warning("health check failed; nodes keep their states: %s", exc)
            return
        rows = {r.name: r for r in session.scalars(select(tables.Node))}
        for name, row in rows.items():
            i = self.cluster.node_index.get(name)
            if i is None:
                continue
            if name in bad and row.state != "down":
                row.state, row.reason, row.changed_at = "down", f"unhealthy: {bad[name]}", now
                record_node_event(session, row, "health check")
                self.dirty = True
                self.cluster.node_state[i] = int(NodeState.DOWN)
                log.warning("node %s is down: %s", name, bad[name])
            elif name not in bad and row.state == "down" and row.reason.startswith("unhealthy: "):
                row.state, row.reason, row.changed_at = "up", "", now
                record_node_event(session, row, "health check")
                self.dirty = True
                self.cluster.node_state[i] = int(NodeState.UP)
        if self.inventory is not None:  # new nodes are checked from the next period on
            self._follow_inventory(session, now)

    def _follow_inventory(self, session, now: float) -> None:
        """Nodes that joined the backend are added, nodes that left it go down (their jobs are
        recovered like a failed node's; they come back if they return). The cluster changes in
        place, and everything kept by node index is re-mapped by node name."""
        try:
            spec = self.backend.cluster_spec()
            if _shape(spec) == self.inventory:
                return
            new = parse_cluster(spec, f"the {self.backend.name} backend's inventory")
        except Exception:  # unreadable or unusable now: keep the cluster as it is, try next period
            log.exception("the %s inventory could not be read; the cluster stays as it is", self.backend.name)
            return
        grown = merge_inventory(self.cluster, new)
        old_names = self.cluster.node_names
        self.cluster.become(grown)
        self.inventory = _shape(spec)
        index = self.cluster.node_index
        rows = {r.name: r for r in session.scalars(select(tables.Node))}
        present = _spec_names(spec)
        for i, record in enumerate(self.cluster.nodes):
            row = rows.get(record.name)
            if record.name not in present:
                if row is not None and row.reason != GONE:  # not "unhealthy": no check revives it
                    row.state, row.reason, row.changed_at = "down", GONE, now
                    record_node_event(session, row, "inventory")
                    log.warning("node %s left the %s inventory", record.name, self.backend.name)
            elif row is None:  # a new node: as the backend reports it (the health check follows)
                down = record.state is NodeState.DOWN
                session.add(
                    tables.Node(
                        name=record.name,
                        state="down" if down else "up",
                        reason=DOWN_IN_INVENTORY if down else "",
                        changed_at=now,
                    )
                )
                log.info("node %s joined with %d %s cards", record.name, record.cards, record.accelerator.id)
            elif row.reason == GONE:  # back again (down if the backend has it down)
                down = record.state is NodeState.DOWN
                row.state, row.reason = ("down", DOWN_IN_INVENTORY) if down else ("up", "")
                row.changed_at = now
                record_node_event(session, row, "inventory")
            if row is not None:
                self.cluster.node_state[i] = int(NodeState[row.state.upper()])
        session.flush()

        def moved(p: Placement) -> Placement:
            return Placement(
                p.model,
                tuple(replace(g, nodes=tuple(index[old_names[n]] for n in g.nodes)) for g in p.groups),
            )

        for a in self.active.values():
            a.placement = moved(a.placement)
            a.job.placement = a.placement
        self.busy = {index[old_names[n]]: mask for n, mask in self.busy.items()}
        self.state = ClusterState.with_placements(self.cluster, [j.placement for j in self.running.values()])
        self.on_cluster_change()
        self._retree(now)

    def _reconcile(self, session, now: float) -> None:
        # every status first: a backend that cannot answer (Slurm restarting, say) fails the tick
        # before anything changed, in memory or in the database
        statuses = {
            job_id: self.backend.status(job_id, a.run, a.tasks)
            for job_id, a in self.active.items()
            if a.launched
        }
        for job_id, a in list(self.active.items()):
            if not a.launched:  # nothing started yet: a stop is immediate
                if a.stopping is not None:
                    self._finish(session, job_id, a, a.stopping.target, a.stopping.reason, now)
                continue
            tasks = statuses[job_id]
            alive = [t for t in tasks if t.state is TaskState.RUNNING]
            if a.stopping is not None:
                if not alive:
                    self._record_tasks(session, job_id, a, tasks, now)
                if not alive and a.stopping.shrink_to is not None:
                    self._restart_smaller(session, job_id, a, _ended(tasks, now))
                elif not alive:
                    self._finish(session, job_id, a, a.stopping.target, a.stopping.reason, _ended(tasks, now))
                elif not a.stopping.killed and now >= a.stopping.kill_at:
                    self.backend.signal(job_id, a.run, signal.SIGKILL)
                    a.stopping.killed = True
                continue
            if a.state is JobState.ADMITTED and any(t.state is not TaskState.ABSENT for t in tasks):
                nodes = sorted({n for n in (self.cluster.node_names[i] for i in a.placement.node_set())})
                self._transition(
                    session,
                    job_id,
                    JobState.ADMITTED,
                    JobState.RUNNING,
                    f"{a.tasks} task(s) on {', '.join(nodes)}",
                    now,
                )
                a.state = JobState.RUNNING
            broken = [
                t
                for t in tasks
                if t.state is TaskState.ABSENT or (t.state is TaskState.EXITED and t.exit_code != 0)
            ]
            if not alive and self._past_time_limit(a, _ended(tasks, now)):
                # every task ended past the time limit: the limit's stop, which a server restart
                # forgot (the tasks took SIGTERM, saved and exited while nobody watched), not a
                # success nor a failure to restart from
                limit = effective_time_limit(a.job, self.tree, None)
                why = f"time limit of {limit:g} s reached"
                since = a.job.start_time + limit
                a.stopping = Stopping(JobState.FAILED, why, since=since, kill_at=now, kind="timeout")
                self._record_tasks(session, job_id, a, tasks, now)
                self._finish(session, job_id, a, JobState.FAILED, why, _ended(tasks, now))
                continue
            if broken:
                # the cause first: a task that exited with an error of its own, not one killed
                # (by a signal, or lost) because another failed
                t = min(broken, key=lambda t: (not (t.exit_code and t.exit_code < 128), t.index))
                why = (
                    f"task {t.index} was lost"
                    if t.state is TaskState.ABSENT
                    else f"task {t.index} {t.note}"
                    if t.note
                    else f"task {t.index} was killed"
                    if t.exit_code is None
                    else f"task {t.index} exited with code {t.exit_code}"
                )
                # stopped from this moment (not the tick's start): a task that ended before it, even
                # while this tick ran, ended by itself and keeps its own outcome (task_state)
                self._stop(job_id, a, *self._after_failure(a, why), time.time(), failure=True)
                self._next_health = 0.0  # a node may have failed: look before placing anything again
            elif not alive:
                why = "every task exited with code 0"
                self._record_tasks(session, job_id, a, tasks, now)
                self._finish(session, job_id, a, JobState.SUCCEEDED, why, _ended(tasks, now))

    def _record_tasks(self, session, job_id: int, a: Active, tasks, now: float) -> None:
        """How each task of the run that just ended fared, for accounting (``wanka acct``)."""
        start = session.scalar(
            select(tables.JobRun.start).where(tables.JobRun.job_id == job_id, tables.JobRun.run == a.run)
        )
        by_index = {t.index: t for t in tasks}
        rows = []
        for rank, (role, node, _, devices) in enumerate(a.placement.tasks()):
            t = by_index.get(rank)
            rows.append(
                {
                    "job_id": job_id,
                    "run": a.run,
                    "task": rank,
                    "role": role,
                    "node": self.cluster.node_names[node],
                    "cards": len(devices),
                    "start": start if start is not None else now,
                    "end": (t.ended_at if t is not None and t.ended_at else now),
                    "exit_code": t.exit_code if t is not None else None,
                    "max_rss_kib": t.max_rss_kib if t is not None else None,
                    "state": task_state(t, a.stopping),
                }
            )
        if rows:  # once per run; a run recorded before (a retried tick) is replaced, never doubled
            session.execute(
                delete(tables.TaskRun).where(tables.TaskRun.job_id == job_id, tables.TaskRun.run == a.run)
            )
            session.execute(insert(tables.TaskRun), rows)

    def _after_failure(self, a: Active, why: str) -> tuple[JobState, str]:
        if a.failures < a.restarts:
            return JobState.PENDING, f"{why}; restart {a.failures + 1} of {a.restarts}"
        budget = f" (restarts used: {a.failures} of {a.restarts})" if a.restarts else ""
        return JobState.FAILED, why + budget

    def _limits(self, now: float) -> None:
        """Time limits of jobs holding cards."""
        for job_id, a in self.active.items():
            limit = effective_time_limit(a.job, self.tree, None)  # its own, else its queue's default
            started = a.job.start_time
            if a.stopping is None and limit is not None and started is not None and now - started > limit:
                self._stop(
                    job_id, a, JobState.FAILED, f"time limit of {limit:g} s reached", now, kind="timeout"
                )

    def _past_time_limit(self, a: Active, end: float) -> bool:
        """Did the run end after its time limit (its own, else its queue's default)?"""
        limit = effective_time_limit(a.job, self.tree, None)
        return limit is not None and a.job.start_time is not None and end - a.job.start_time > limit

    def _stop(
        self,
        job_id: int,
        a: Active,
        target: JobState,
        reason: str,
        now: float,
        failure: bool = False,
        kind: str | None = None,
    ):
        """SIGTERM the run's tasks (SIGKILL after the grace period); ``kind`` is what the tasks this
        stops are recorded as (default: cancelled, failed, or preempted, from the target)."""
        if kind is None:
            kind = "cancelled" if target is JobState.CANCELLED else "failed" if failure else "preempted"
        a.stopping = Stopping(
            target, reason, since=now, kill_at=now + self.grace_s, kind=kind, failure=failure
        )
        if a.launched:
            self.backend.signal(job_id, a.run, signal.SIGTERM)

    def _finish(self, session, job_id: int, a: Active, target: JobState, reason: str, now: float):
        """The job's processes are gone: free its cards, record how it ended (or requeue it)."""
        del self.active[job_id]
        self.dirty = True
        if target is JobState.PENDING:
            cancel, why = session.execute(
                select(tables.Job.cancel_requested, tables.Job.cancel_reason).where(tables.Job.id == job_id)
            ).one()
            if cancel:  # cancelled while it was being stopped: it ends here instead of waiting again
                target, reason = JobState.CANCELLED, why or "cancelled"
        if a.in_core:
            self._release(a.job)
        else:
            self._occupy(a.placement, -1)
        failures = a.failures + (1 if a.stopping is not None and a.stopping.failure else 0)
        extra = {"failures": failures}
        if target is not JobState.PENDING:  # a requeued job keeps its last placement on record
            extra["end_time"] = now
        self._transition(session, job_id, a.state, target, reason, now, **extra)
        session.execute(
            update(tables.JobRun)
            .where(tables.JobRun.job_id == job_id, tables.JobRun.run == a.run, tables.JobRun.end.is_(None))
            .values(end=now)
        )
        if target is JobState.PENDING:
            job = a.job
            job.attained_service = self._served(a, now)
            job.state, job.placement, job.start_time, job.last_run_end = JobState.PENDING, None, None, now
            self.pending.add(job)

    def _shrink(self, session, job_id: int, a: Active, p: Placement, now: float) -> None:
        """The core gave part of a running elastic job to a waiting one. A process gang cannot
        change size in place, so this is a checkpointed restart at the smaller size (SIGTERM, the
        grace period to save, then a new run on ``p``, a subset of its cards). The cards it gives
        up count as busy until its old processes are gone, so whoever takes them waits for that."""
        job = a.job
        self.state.release(job.placement)
        self.state.allocate(p)
        self.index.remove(job.id)
        job.placement = p
        self.index.add(job, now)
        if not a.launched:  # nothing runs yet: it simply starts smaller
            a.placement, a.tasks = p, p.num_tasks
            session.execute(
                update(tables.Job)
                .where(tables.Job.id == job_id)
                .values(placement=placement_to_json(self.cluster, p))
            )
            return
        self._occupy(a.placement, +1)
        why = f"gives {a.placement.num_tasks - p.num_tasks} task(s) back to a waiting job"
        self._stop(job_id, a, JobState.RUNNING, why, now, kind="resized")
        a.stopping.shrink_to = p

    def _restart_smaller(self, session, job_id: int, a: Active, now: float) -> None:
        """The old run of a shrunk job is gone: end it, and admit a new run on the smaller
        placement (launched once its cards are free of other jobs' processes)."""
        p = a.stopping.shrink_to
        self._occupy(a.placement, -1)
        cancel, why = session.execute(
            select(tables.Job.cancel_requested, tables.Job.cancel_reason).where(tables.Job.id == job_id)
        ).one()
        if cancel:  # cancelled while it gave its surplus back: it ends instead of restarting
            a.in_core = True  # its smaller placement is what the core holds
            self._finish(session, job_id, a, JobState.CANCELLED, why or "cancelled", now)
            return
        a.job.attained_service = self._served(a, now)
        session.execute(
            update(tables.JobRun)
            .where(tables.JobRun.job_id == job_id, tables.JobRun.run == a.run, tables.JobRun.end.is_(None))
            .values(end=now)
        )
        why = f"restarts with {p.num_tasks} task(s) after giving surplus back ({a.stopping.reason})"
        self._transition(session, job_id, a.state, JobState.PENDING, why, now)
        self.running.pop(a.job.id)  # _admit takes it from the waiting jobs, as any start
        self.state.release(p)
        self.index.remove(a.job.id)
        del self.active[job_id]
        self.pending.add(a.job)
        a.job.state = JobState.PENDING
        self._admit(session, job_id, p, False, now)
        self.dirty = True

    def _release(self, job: Job) -> None:
        self.state.release(job.placement)
        self.index.remove(job.id)
        del self.running[job.id]

    def _occupy(self, p: Placement, sign: int) -> None:
        for g in p.groups:
            for node, mask in zip(g.nodes, g.masks, strict=True):
                self.busy[node] = self.busy.get(node, 0) + sign * mask
                if not self.busy[node]:
                    del self.busy[node]

    def waiting_reason(self, job_id: int, queue: str, since: float) -> str | None:
        """Why a waiting job (waiting ``since``, epoch s) has not started, as of the last cycle
        (Slurm's ``Reason`` for a pending job: Resources, Priority, a group limit), or None when no
        cycle has seen it yet or the loop does not hold it (held back by a dependency or a hold:
        its recorded reason says why)."""
        if str(job_id) not in self.pending or since >= (self.last_cycle or 0.0):
            return None
        if job_id in self.reserved:
            return "waiting for cards: next in line, the cards it needs are reserved for it"
        fit = self.outcomes.get(job_id)
        if fit is Fit.NO_QUOTA:
            return f"waiting for quota: queue {queue} is at its limit (nominal quota plus what it may borrow)"
        if fit is Fit.NO_FIT:
            why = "waiting for cards: its queue has quota, but no nodes have room now"
            # in numpy: a job list asks this of every waiting job, on clusters of 10,000 nodes
            names = self.cluster.node_names
            out = [names[i] for i in np.flatnonzero(self.cluster.node_state != NodeState.UP).tolist()]
            if out:  # a node an operator drained, or one that is down, may be what it waits for
                shown = ", ".join(out[:5]) + (f" and {len(out) - 5} more" if len(out) > 5 else "")
                why += f" ({len(out)} node{'s' if len(out) > 1 else ''} draining or down: {shown})"
            return why
        if fit is Fit.RESERVED:
            return "waiting for cards: the free ones are reserved for a job ahead of it"
        if self.cycle_count:
            return "waiting behind jobs ahead of it in policy order"
        return None

    # --- the cycle -----------------------------------------------------------------------------

    def _accrue_usage(self, now: float) -> None:
        """Book each leaf queue's use since the last tick at the rate its running jobs hold now.
        Every tick, not only in cycles: a job that starts and ends while nothing waits is used
        work too (fair share would forget it), and the console shows the standing as it is."""
        rates: dict[str, list[float]] = {}
        for job in self.running.values():
            p = job.placement
            model = self.cluster.models[self.cluster.model_index[p.model]]
            r = rates.setdefault(job.queue, [0.0, 0.0, 0.0])
            r[0] += p.total_cards * model.rated_tflops / 1e3
            r[1] += p.total_cpus
            r[2] += p.total_memory
        for q, u in self.usage.items():
            if now > u.as_of:
                self.usage[q] = accrue(u, now, tuple(rates.get(q, (0.0, 0.0, 0.0))), HALF_LIFE_S)

    def _cycle(self, session, now: float) -> None:
        self._park_over_cap()
        self._hold_queues(session, now)
        if not self.pending and not (self.cluster.node_state == int(NodeState.DOWN)).any():
            self.positions, self.estimates, self.outcomes, self.reserved = {}, {}, {}, set()
            return
        t0 = time.perf_counter()
        result = self._decide(session, now)
        if result is None:
            return
        elapsed = time.perf_counter() - t0
        self.cycle_seconds.observe(elapsed)
        self.recent_cycles.append((now, elapsed))
        self.cycles.inc()
        self.cycle_count += 1
        self.last_cycle = now
        # queue positions: O(waiting jobs) to list, so at most once a second (read before the
        # index changes below); between two listings they are up to a second old
        if now - self._positions_at >= POSITIONS_EVERY_S or len(self.pending) < 1000:
            self.positions = {int(j): i + 1 for i, j in enumerate(result.order)}
            self._positions_at = now
        self.estimates = {int(r.job_id): r.start for r in result.reservations if r.start is not None}
        self.outcomes = {int(j): f for j, f in result.outcomes.items()}
        self.reserved = {int(r.job_id) for r in result.reservations}
        for d in result.stops:
            self.decisions.labels("stop").inc()
            self.decision_count += 1
            job_id = int(d.job_id)
            a = self.active.get(job_id)
            if a is None or not a.in_core:
                continue
            self._release(a.job)
            a.in_core = False
            shrinking = a.stopping is not None and a.stopping.shrink_to is not None
            if not shrinking:  # a shrink counts its old cards busy already, until they are free
                self._occupy(a.placement, +1)
            if a.stopping is not None and not shrinking:
                # on its way out already (a time limit, a failure, a cancel): the core forgets it
                # now, and that stop's outcome stands; a preemption must not requeue a job that
                # timed out or failed, nor move its kill deadline
                continue
            # (a shrinking job evicted now restarts at no size: it is requeued, as any victim)
            if d.reason is StopReason.NODE_FAILURE:
                target, why = self._after_failure(a, "a node it ran on went down")
                self._stop(job_id, a, target, why, now, failure=True, kind="node_fail")
            else:
                self._transition(session, job_id, a.state, JobState.PREEMPTED, d.reason.value, now)
                a.state = JobState.PREEMPTED
                self._stop(job_id, a, JobState.PENDING, f"requeued after being {d.reason.value}", now)
        for d in result.resizes:  # shrinks only: the server's policy has no resize (grow) action
            a = self.active.get(int(d.job_id))
            if not d.shrink or a is None or not a.in_core:
                continue
            if a.stopping is not None and a.stopping.shrink_to is not None:
                # shrinking already: it restarts smaller still (its old cards count busy already)
                self.state.release(a.job.placement)
                self.state.allocate(d.placement)
                self.index.remove(a.job.id)
                a.job.placement = a.stopping.shrink_to = d.placement
                self.index.add(a.job, now)
            elif a.stopping is not None:  # on its way out anyway: the core forgets it now
                self._release(a.job)
                a.in_core = False
                self._occupy(a.placement, +1)
            else:
                self._shrink(session, int(d.job_id), a, d.placement, now)
                self.decisions.labels("shrink").inc()
                self.decision_count += 1
        tasks = self._tasks_by_tenant()
        cap = self.limits.max_running_tasks_per_tenant
        for d in result.starts:
            job_id = int(d.job_id)
            tenant = self.pending.get(d.job_id).tenant
            if tasks.get(tenant, 0) + d.placement.num_tasks > cap:  # several of one tenant this cycle
                continue
            tasks[tenant] = tasks.get(tenant, 0) + d.placement.num_tasks
            if self._admit(session, job_id, d.placement, d.backfilled, now, d.preemptible_by):
                self.decisions.labels("start").inc()
                self.decision_count += 1
        for job_id_s, why in result.unschedulable.items():
            job_id = int(job_id_s)
            if job_id_s in self.pending:
                self.pending.remove(job_id_s)
                self._transition(
                    session,
                    job_id,
                    JobState.PENDING,
                    JobState.FAILED,
                    f"can never run: {why}",
                    now,
                    end_time=now,
                )
        self.per_cycle.observe(len(result.decisions))

    def _snapshot(self, now: float) -> Snapshot:
        self._book_service(now)
        return Snapshot(
            now,
            self.cluster,
            self.state,
            self.tree,
            self.pending.jobs,
            list(self.running.values()),
            self.usage,
            self.index,
            self.pending,
        )

    def _decide(self, session, now: float):
        """The cycle's result; when the core fails, the waiting jobs that make it fail are held
        (with the error as the reason) and the cycle runs again without them. None: no cycle
        this tick (the fault is not any one waiting job's; logged, retried next tick)."""
        snapshot = self._snapshot(now)
        try:
            return run_cycle(snapshot, self.policy)
        except Exception:
            log.exception("scheduling cycle failed; looking for the job that causes it")
        culprits = find_culprits(snapshot, self.policy)
        for job_id, error in culprits.items():
            self.pending.remove(job_id)
            self._hold(session, int(job_id), error, now)
        if not culprits:
            return None
        try:
            return run_cycle(self._snapshot(now), self.policy)
        except Exception:
            log.exception("scheduling cycle failed again without the held jobs")
            return None

    def _hold_queues(self, session, now: float) -> None:
        """Jobs of queues an admin holds wait outside the cycle; a released queue's come back.
        The holds are read once a second (another server's API may set them) or when told."""
        if now - self._queues_checked >= FOLLOW_EVERY_S:
            self._queues_checked = now
            rows = session.execute(
                select(tables.QueueHold.queue, tables.User.name, tables.QueueHold.reason).join(
                    tables.User, tables.User.id == tables.QueueHold.held_by
                )
            )
            held = {q: f"queue {q} held by {who}" + (f": {why}" if why else "") for q, who, why in rows}
            if held != self.held_queues:
                self.held_queues = held
                for job_id, job in list(self.queue_parked.items()):
                    if job.queue not in held:
                        del self.queue_parked[job_id]
                        self.pending.add(job)
                self.dirty = True
        if self.held_queues:  # jobs that entered the index since: O(waiting) only while a queue is held
            for job in [j for j in self.pending.jobs if j.queue in self.held_queues]:
                self.queue_parked[job.id] = self.pending.remove(job.id)
                session.execute(
                    update(tables.Job)
                    .where(tables.Job.id == int(job.id), tables.Job.state == JobState.PENDING.value)
                    .values(reason=self.held_queues[job.queue])
                )

    def _open_gates(self, session, now: float) -> None:
        """Held-back jobs whose dependencies now hold (and whose array has room) join the index;
        those whose dependencies never will are cancelled with why; the rest say what they wait for."""
        ready, never, reasons = self.gates.decide(session, lambda j: j in self.pending)
        for job in ready:
            self.pending.add(job)
            self.dirty = True
        for job_id, why in never:
            self._transition(
                session, int(job_id), JobState.PENDING, JobState.CANCELLED, why, now, end_time=now
            )
        for job_id, why in reasons.items():
            session.execute(
                update(tables.Job)
                .where(tables.Job.id == int(job_id), tables.Job.state == JobState.PENDING.value)
                .values(reason=why)
            )
        if ready:  # their reasons ("waiting for …") are over
            ids = [int(j.id) for j in ready]
            for chunk in range(0, len(ids), 500):
                session.execute(
                    update(tables.Job)
                    .where(tables.Job.id.in_(ids[chunk : chunk + 500]), tables.Job.reason != "")
                    .values(reason="")
                )

    def _hold(self, session, job_id: int, error: Exception, now: float) -> None:
        """Hold a waiting job that the scheduler cannot handle: its owner and the operator read why
        (its reason and events); ``wanka_jobs_held_total`` counts it."""
        why = f"held: the scheduler failed on this job ({type(error).__name__}: {error})"[:2000]
        self.held.labels("scheduler_error").inc()
        self._transition(session, job_id, JobState.PENDING, JobState.HELD, why, now)
        log.error("job %s %s", job_id, why)

    def _hold_unindexable(self, session, now: float) -> None:
        for job_id, error in self.unindexable.items():
            self._hold(session, job_id, error, now)
        self.unindexable = {}

    def _tasks_by_tenant(self) -> dict[str, int]:
        """Tasks of jobs holding cards or still running, by tenant."""
        out: dict[str, int] = {}
        for a in self.active.values():
            out[a.job.tenant] = out.get(a.job.tenant, 0) + a.tasks
        return out

    def _park_over_cap(self) -> None:
        """Keep out of the cycle the waiting jobs whose tenant would run more than
        ``max_running_tasks_per_tenant`` tasks with them; they come back when its tasks end."""
        cap = self.limits.max_running_tasks_per_tenant
        tasks = self._tasks_by_tenant()
        for job_id, job in list(self.parked.items()):
            if tasks.get(job.tenant, 0) + _min_tasks(job) <= cap:
                del self.parked[job_id]
                self.pending.add(job)
        # only a tenant within one job's size of its cap can have a job over it
        tight = {t for t, n in tasks.items() if n + self.limits.max_tasks_per_job > cap}
        if not tight:
            return
        for job in self.pending.jobs:
            if job.tenant in tight and tasks[job.tenant] + _min_tasks(job) > cap:
                self.parked[job.id] = self.pending.remove(job.id)

    def _admit(
        self,
        session,
        job_id: int,
        p: Placement,
        backfilled: bool,
        now: float,
        preemptible_by: str | None = None,
    ) -> bool:
        row = session.execute(
            select(tables.Job.runs, tables.Job.failures, tables.Job.tenant_id, tables.Job.spec).where(
                tables.Job.id == job_id
            )
        ).first()
        runs, failures, tenant_id, spec = row
        nodes = sorted({self.cluster.node_names[n] for n in p.node_set()})
        why = f"placed on {', '.join(nodes)}" + (" (backfilled)" if backfilled else "")
        if preemptible_by is not None:
            why += " on loan: on nodes reserved for a waiting job, which may preempt it"
        ok = self._transition(
            session,
            job_id,
            JobState.PENDING,
            JobState.ADMITTED,
            why,
            now,
            placement=placement_to_json(self.cluster, p),
            start_time=now,
            runs=runs + 1,
        )
        job = self.pending.remove(str(job_id))
        if not ok:  # cancelled since the cycle looked: start nothing
            return False
        model = self.cluster.models[self.cluster.model_index[p.model]]
        session.execute(
            insert(tables.JobRun).values(
                job_id=job_id,
                run=runs + 1,
                tenant_id=tenant_id,
                queue=job.queue,
                model=p.model,
                cards=p.total_cards,
                tflops_per_card=model.rated_tflops,
                start=now,
            )
        )
        job.placement, job.start_time, job.state = p, now, JobState.ADMITTED
        job.preemptible_by = preemptible_by
        self.state.allocate(p)
        self.running[job.id] = job
        self.index.add(job, now)
        self.active[job_id] = Active(
            job,
            runs + 1,
            p.num_tasks,
            p,
            JobState.ADMITTED,
            restarts=_restarts(spec),
            failures=failures,
            served_before=job.attained_service,
        )
        return True

    def _past_service(self, session) -> dict[int, float]:
        """Card-seconds of the ended runs of unfinished jobs, when the policy orders by attained
        service (a restarted server ranks a requeued job as the one before it did)."""
        if self.policy.job_order not in LAS_ORDERS:
            return {}
        run, job = tables.JobRun, tables.Job
        unfinished = select(job.id).where(job.state.in_([s.value for s in HOLDING_OR_WAITING]))
        rows = session.execute(
            select(run.job_id, func.sum(run.cards * (run.end - run.start)))
            .where(run.end.is_not(None), run.job_id.in_(unfinished))
            .group_by(run.job_id)
        )
        return {job_id: float(total or 0.0) for job_id, total in rows}

    def _served(self, a: Active, now: float) -> float:
        """The job's attained service (Tiresias' card-seconds) up to ``now``: earlier runs and this
        one, on the cards this run was given."""
        started = a.job.start_time
        return a.served_before + (a.placement.total_cards * max(0.0, now - started) if started else 0.0)

    def _book_service(self, now: float) -> None:
        """Under a LAS order, running jobs' attained service up to now: their rank as victims."""
        if self.policy.job_order in LAS_ORDERS:
            for a in self.active.values():
                if a.in_core:
                    a.job.attained_service = self._served(a, now)

    # --- the backend ---------------------------------------------------------------------------

    def _launch_ready(self) -> None:
        """Launch admitted jobs whose cards are free of earlier jobs' processes (a victim of
        preemption may still be saving its checkpoint)."""
        ready = [
            a
            for a in self.active.values()
            if not a.launched
            and a.stopping is None
            and not any(
                self.busy.get(node, 0) & mask
                for g in a.placement.groups
                for node, mask in zip(g.nodes, g.masks, strict=True)
            )
        ]
        if not ready:
            return
        # the launches of a tick together (the backend may make them side by side: sbatch), at
        # most the backend's launches_per_tick (the rest at the next tick, 0.2 s on while any wait)
        ready = ready[: self.backend.launches_per_tick]
        outcomes = self.backend.launch_many(self._launches(ready))
        started = []
        for a in ready:
            error = outcomes.get(int(a.job.id))
            if isinstance(error, BackendUnavailable):  # not the job's fault: launch it at a later tick
                log.warning("launch of job %s deferred: %s", a.job.id, error)
                continue
            if error is not None:  # the backend could not start it: fail that run
                log.error("launch of job %s failed: %s", a.job.id, error)
                a.launched = True
                target, why = self._after_failure(a, f"the backend could not start it: {error}")
                now = time.time()
                a.stopping = Stopping(target, why, since=now, kill_at=now, kind="failed", failure=True)
                continue
            a.launched = True
            started.append(a)
        if started:  # processes exist now: the job runs (reconcile sees how they fare)
            now = time.time()
            with self.sessions() as session:
                for a in started:
                    nodes = sorted({self.cluster.node_names[i] for i in a.placement.node_set()})
                    reason = f"{a.tasks} task(s) started on {', '.join(nodes)}"
                    where = {"endpoint": a.endpoint} if a.endpoint else {}
                    if self._transition(
                        session, int(a.job.id), JobState.ADMITTED, JobState.RUNNING, reason, now, **where
                    ):
                        a.state = JobState.RUNNING
                self._commit(session)
            if self.services is not None and any(a.endpoint for a in started):
                self.services.board.poke()  # the gateway learns of the new replicas now

    def _launch(self, a: Active) -> None:
        error = self.backend.launch_many(self._launches([a])).get(int(a.job.id))
        if error is not None:
            raise error

    def _launches(self, actives: list[Active]) -> list[Launch]:
        """What the backend needs to start each run (the specs read in one query)."""
        with self.sessions() as session:
            rows = {
                job_id: rest
                for job_id, *rest in session.execute(
                    select(
                        tables.Job.id,
                        tables.Job.spec,
                        tables.Job.tenant_id,
                        tables.Job.array_job_id,
                        tables.Job.array_index,
                        tables.Job.service_id,
                    ).where(tables.Job.id.in_([int(a.job.id) for a in actives]))
                )
            }
        return [self._launch_of(a, *rows[int(a.job.id)]) for a in actives]

    def _launch_of(
        self, a: Active, spec: dict, tenant_id: int, array_job_id, array_index, service_id=None
    ) -> Launch:
        job_id = int(a.job.id)
        first = self.cluster.node_names[next(iter(a.placement.groups[0].nodes))]
        ckpt = self.backend.checkpoint_dir(job_id)
        address, port = self.backend.node_address(first), self.backend.free_port(first)
        tasks = task_launches(job_id, a.run, self.cluster, a.placement, address, port, ckpt)
        extra = {}
        if service_id is not None:  # a service's replica: where it listens is the backend's to say
            name = spec.get("name", "").rsplit(" v", 1)[0]  # the replica's job is "{service} v{generation}"
            a.endpoint, extra = self.backend.service_endpoint(job_id, a.run, first, port)
            extra |= {
                "WANKA_NODE_ADDRESS": address,
                "WANKA_BASE_URL": f"/services/{spec.get('tenant', '')}/{name}/",
            }
        return Launch(
            job_id,
            a.run,
            spec.get("name", ""),
            tuple(spec["command"]),
            tasks,
            ckpt,
            {**TASK_ENV_DEFAULTS, **spec.get("env", {}), **_array_env(array_job_id, array_index), **extra},
            spec.get("workdir"),
            tenant=spec.get("tenant", ""),
            tenant_id=tenant_id,
            interactive=spec.get("kind") == JobKind.INTERACTIVE.value,
        )

    # --- records -------------------------------------------------------------------------------

    def _transition(
        self,
        session,
        job_id: int,
        current: JobState | None,
        target: JobState,
        reason: str,
        now: float,
        **values,
    ) -> bool:
        """Compare-and-set the job's state (from ``current``, any state when None) and record the
        event. False when the job had moved on (e.g. cancelled meanwhile)."""
        q = update(tables.Job).where(tables.Job.id == job_id)
        if current is not None:
            check_transition(str(job_id), current, target)
            q = q.where(tables.Job.state == current.value)
        done = session.execute(q.values(state=target.value, reason=reason, **values)).rowcount
        self.gates.dirty = True  # a job started or ended: a dependent may go on
        if done:
            session.add(tables.JobEvent(job_id=job_id, time=now, state=target.value, reason=reason))
        return bool(done)


GONE = "gone: no longer in the backend's inventory"
DOWN_IN_INVENTORY = "unhealthy: down in the backend's inventory"  # the health check revives it


def _shape(spec: dict) -> dict:
    """What of an inventory makes the cluster's structure (node states are the health check's)."""
    return {k: v for k, v in spec.items() if k != "node_states"}


def _spec_names(spec: dict) -> set[str]:
    return {n for pool in spec["pools"] for n in pool.get("node_names", ())}


def merge_inventory(old: Cluster, new: Cluster) -> Cluster:
    """``new``, plus the nodes of ``old`` it lacks, kept as DOWN: a node that left may hold jobs
    (they are recovered) and may come back. Tiers follow ``new``."""
    names = set(new.node_names)
    inner = len(new.tiers) - 2
    kept = [
        replace(
            r,
            state=NodeState.DOWN,
            domains=r.domains if len(r.domains) == inner else tuple(f"gone-{t}" for t in new.tiers[1:-1]),
        )
        for r in old.nodes
        if r.name not in names
    ]
    return Cluster(new.name, new.tiers, [*new.nodes, *kept]) if kept else new


def _tracking_writes(sessions: sessionmaker) -> sessionmaker:
    """A session factory like ``sessions`` whose sessions note in ``info["wrote"]`` that they
    wrote (an INSERT, UPDATE or DELETE statement, or a flush of ORM objects)."""
    maker = sessionmaker(**sessions.kw)

    @event.listens_for(maker, "do_orm_execute")
    def _statement(state) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            state.session.info["wrote"] = True

    @event.listens_for(maker, "after_flush")
    def _flush(session, _context) -> None:
        session.info["wrote"] = True

    return maker


def task_state(t: TaskStatus | None, stopping: Stopping | None) -> str:
    """How one task of an ended run ended, in sacct's step states: what wanka stopped it as
    (``cancelled``, ``timeout``, ``preempted``, ``node_fail``, ``resized``: :attr:`Stopping.kind`;
    ``cancelled`` too for the tasks stopped because another task of the run failed) when it was
    still running when wanka asked it to stop, whatever code it then exited with; else
    ``completed`` (code 0) or ``failed`` (any other); ``lost`` when the backend no longer knows
    it. A task that ended by itself before the stop keeps its own outcome."""
    if t is None or t.state is TaskState.ABSENT:
        return "node_fail" if stopping is not None and stopping.kind == "node_fail" else "lost"
    stopped = stopping is not None and (t.ended_at is None or t.ended_at >= stopping.since)
    if stopped:  # even a task that exits 0 on SIGTERM was stopped
        # a run stopped because one of its tasks failed: the others were cancelled for it
        return "cancelled" if stopping.kind == "failed" else stopping.kind
    return "completed" if t.exit_code == 0 else "failed"


def _ended(tasks, now: float) -> float:
    """When the last task ended, as the backend saw it (a task that ended while the server was down
    is not billed until the server came back), else ``now``."""
    times = [t.ended_at for t in tasks]
    if not times or None in times:
        return now
    return min(now, max(times))


def _min_tasks(job: Job) -> int:
    return sum(g.gang_min for g in job.groups)


def _restarts(spec: dict) -> int:
    restart = spec.get("restart") or {}
    return int(restart.get("max", 0))
