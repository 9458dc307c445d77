"""The control loop's service keeper: each tick, every service's replicas made to match what its
spec and its load ask for (docs/services.md).

For each service:

1. the autoscaler (``core.autoscale``, the same code the twin runs) turns the gateway's signal
   (requests per second or in flight, averaged over the spec's window) into a replica count;
2. replicas of the spec's current generation are submitted up to that count; while older ones run,
   at most ``max_surge`` more than the count (a rolling update, Kubernetes' maxUnavailable 0);
3. an old replica stops only when a new one is ready in its place; surplus replicas stop
   (preemptible ones first; within each kind, those not yet running, then not ready, then the
   newest: core.autoscale.retire_order). A replica to stop is first
   taken out of the gateway's rotation (drained) and cancelled once its requests are answered;
4. replicas that fail are replaced after a back-off that doubles with each recent failure
   (Kubernetes' CrashLoopBackOff: 10 s, 20 s, ... at most 5 minutes).

Notebooks past their idle timeout or lifetime are deleted, with a warning event first.

Replicas up to ``replicas.min`` that the queue's nominal quota holds are submitted non-preemptible;
the rest preemptible (Run:ai). Every decision is a service event with its reason.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import delete, func, insert, select

from wanka.core import JobState
from wanka.core.autoscale import Metric, ReplicaView, Scaler, guaranteed_replicas, nominal_cards, retire_order
from wanka.models.service import ServiceSpec
from wanka.server import services, tables
from wanka.server.gateway.board import Board
from wanka.server.job_service import request_cancel

log = logging.getLogger("wanka.services")

DRAIN_GRACE_S = 30.0  # a drained replica is cancelled after this even with requests unanswered
BACKOFF_FIRST_S, BACKOFF_MAX_S = 10.0, 300.0
FAILURES_WINDOW_S = 600.0  # failures this recent count towards the back-off
CHECK_EVERY_S = 1.0  # with no service, how often to look whether one appeared
WARN_BEFORE_CULL_S = 300.0  # a notebook's warning event comes this long before it is culled (at most)


class ServiceKeeper:
    def __init__(self, sessions, board: Board, notify, trees) -> None:
        self.sessions, self.board, self.notify, self.trees = sessions, board, notify, trees
        self.scalers: dict[int, Scaler] = {}
        self.draining: dict[int, float] = {}  # replica job -> when it was drained
        self.ready_seen: dict[int, set[int]] = {}
        self.backoff_said: dict[int, float] = {}
        self.warned: dict[int, int] = {}  # notebook -> the deadline it was warned of
        self._none_until = 0.0

    def tick(self, now: float) -> None:
        mono = time.monotonic()
        if mono < self._none_until:
            return
        with self.sessions() as session:
            rows = session.execute(
                select(tables.Service, tables.Tenant.name).join(
                    tables.Tenant, tables.Tenant.id == tables.Service.tenant_id
                )
            ).all()
            if not rows:
                self._none_until = mono + CHECK_EVERY_S
                self.scalers.clear()
                return
            live = services.replicas(session, [r[0].id for r in rows])
            submitted, cancelled = [], []
            for row, tenant in rows:
                try:
                    self._keep(session, row, tenant, live[row.id], now, mono, submitted, cancelled)
                except Exception:  # one service's trouble must not stop the others'
                    log.exception("service %s of %s", row.name, tenant)
            session.commit()
        for job_id in submitted:
            self.notify("submitted", job_id)
        for job_id in cancelled:
            self.notify("cancelled", job_id)
        if submitted or cancelled:
            self.board.poke()

    def _keep(self, session, row, tenant, reps, now, mono, submitted, cancelled) -> None:
        if row.deleted_at is not None:
            going = [r for r in reps if not r.cancel_requested]
            cancelled += self._stop(session, row, going, "the service was deleted", mono)
            if not reps:
                session.execute(delete(tables.Service).where(tables.Service.id == row.id))
                services.event(session, row.id, "deleted: every replica has stopped", now)
                self.scalers.pop(row.id, None)
            return
        spec = ServiceSpec.model_validate(row.spec)
        if spec.kind == "notebook" and self._cull(session, row, spec, reps, now):
            return
        self._scale(session, row, spec, now, mono)
        want = row.desired
        alive = [r for r in reps if not r.cancel_requested]
        new = [r for r in alive if r.service_generation == row.generation]
        old = [r for r in alive if r.service_generation != row.generation]
        ready = self.board.ready_ids(row.id)
        self._note_ready(session, row, ready, now)
        # submit: up to the count; while old replicas run, up to max_surge above it
        room = want - len(new)
        if old:  # replicas still stopping hold their cards: they count against the surge too
            room = min(room, want + spec.update.max_surge - len(reps))
        if room > 0 and not self._backing_off(session, row, now):
            nominal = nominal_cards(self.trees(session), spec.queue, spec.accelerators)
            held = services.held_guaranteed(session, spec.queue, row.id)
            sure = guaranteed_replicas(spec.replicas.min, spec.cards, nominal, held)
            steady = sum(1 for r in new if r.spec.get("preemptible") is False)
            for _ in range(room):
                keep = steady < sure
                steady += keep
                submitted.append(self._submit(session, row, spec, not keep, now))
            what = "rolling update" if old else f"scaled to {want}"
            services.event(
                session, row.id, f"submitted {room} replica(s) of generation {row.generation} ({what})", now
            )
        # stop old replicas a ready new one replaces; then surplus new ones
        ready_new = sum(1 for r in new if r.id in ready)
        keep_old = max(0, want - ready_new)
        old_order = sorted(old, key=lambda r: (r.id in ready, r.state == JobState.RUNNING.value, r.id))
        victims = old_order[: max(0, len(old) - keep_old)]
        why = f"replaced by generation {row.generation}"
        cancelled += self._stop(session, row, victims, why, mono)
        if len(new) > want:
            views = [
                ReplicaView(
                    r,
                    r.state == JobState.RUNNING.value,
                    r.spec.get("preemptible") is False,
                    r.id in ready,
                    r.id,
                )
                for r in new
            ]
            surplus = [v.key for v in retire_order(views)[: len(new) - want]]
            cancelled += self._stop(session, row, surplus, f"scaled down to {want}", mono)

    def _cull(self, session, row, spec: ServiceSpec, reps, now: float) -> bool:
        """A notebook past its ``idle_timeout_s`` (no request through the gateway and no activity
        Jupyter reports: kernels, terminals) or its ``max_lifetime_s`` is deleted, with a warning
        event first (JupyterHub's idle culler). True when culled now."""
        deadlines = []
        if spec.idle_timeout_s:
            started = max([row.created_at] + [r.start_time or 0.0 for r in reps])
            active = max(started, self.board.meter(row.id).last, self.board.activity.get(row.id, 0.0))
            deadlines.append(
                (active + spec.idle_timeout_s, f"idle for {now - active:.0f} s", "idle_timeout_s")
            )
        if spec.max_lifetime_s:
            deadlines.append(
                (row.created_at + spec.max_lifetime_s, f"{now - row.created_at:.0f} s old", "max_lifetime_s")
            )
        if not deadlines:
            return False
        deadline, why, field = min(deadlines)
        limit = spec.idle_timeout_s if field == "idle_timeout_s" else spec.max_lifetime_s
        if now >= deadline:
            row.deleted_at = now
            services.event(session, row.id, f"culled: {why} ({field} {limit:g} s); stopping it", now)
            self.warned.pop(row.id, None)
            return True
        warn = min(WARN_BEFORE_CULL_S, 0.2 * limit)
        if now >= deadline - warn and self.warned.get(row.id) != round(deadline):
            self.warned[row.id] = round(deadline)
            services.event(
                session,
                row.id,
                f"warning: {why}; culled in {deadline - now:.0f} s ({field} {limit:g} s)",
                now,
            )
        return False

    def _scale(self, session, row, spec: ServiceSpec, now: float, mono: float) -> None:
        policy = spec.policy()
        scaler = self.scalers.get(row.id)
        if scaler is None:
            scaler = self.scalers[row.id] = Scaler(policy, row.desired)
        scaler.policy = policy
        meter = self.board.meter(row.id)
        rps, inflight = meter.observe(mono, policy.window_s)
        observed = rps if policy.metric is Metric.RPS else inflight
        if scaler.replicas == 0 and meter.inflight > 0:
            observed = max(observed, float(meter.inflight))  # a request waits for a replica
        why = scaler.step(now, observed)
        if why is not None and scaler.replicas != row.desired:
            row.desired, row.reason = scaler.replicas, why
            services.event(session, row.id, f"autoscaler: {why}", now)

    def _submit(self, session, row, spec: ServiceSpec, preemptible: bool, now: float) -> int:
        job = spec.replica_job(preemptible, row.generation)
        body = job.model_dump(mode="json")
        core = job.to_job("0")
        conn = session.connection()
        job_id = conn.execute(
            insert(tables.Job)
            .values(
                tenant_id=row.tenant_id,
                user_id=row.user_id,
                queue=job.queue,
                name=job.name,
                spec=body,
                state=JobState.PENDING.value,
                reason="",
                cards=core.total_cards,
                submit_time=now,
                runs=0,
                failures=0,
                cancel_requested=False,
                service_id=row.id,
                service_generation=row.generation,
            )
            .returning(tables.Job.id)
        ).scalar_one()
        kind = "preemptible" if preemptible else "never preempted"
        conn.execute(
            insert(tables.JobEvent),
            [
                {
                    "job_id": job_id,
                    "time": now,
                    "state": "pending",
                    "reason": f"replica of service {row.name} ({kind})",
                }
            ],
        )
        return job_id

    def _stop(self, session, row, victims, why: str, mono: float) -> list[int]:
        """Drain ``victims``; cancel those whose requests are answered (or drained long ago)."""
        if not victims:
            return []
        self.board.drain(row.id, {r.id for r in victims})
        out = []
        for r in victims:
            since = self.draining.setdefault(r.id, mono)
            busy = self.board.inflight(r.id, row.id)
            if busy and mono - since < DRAIN_GRACE_S and r.state == JobState.RUNNING.value:
                continue
            if request_cancel(session, r.id, f"service {row.name}: {why}"):
                pass  # it was waiting: ended here
            self.draining.pop(r.id, None)
            out.append(r.id)
            services.event(session, row.id, f"replica job {r.id} stopping: {why}")
        return out

    def _backing_off(self, session, row, now: float) -> bool:
        recent = (
            tables.Job.service_id == row.id,
            tables.Job.state == JobState.FAILED.value,
            tables.Job.end_time > now - FAILURES_WINDOW_S,
        )
        n, last = session.execute(select(func.count(), func.max(tables.Job.end_time)).where(*recent)).one()
        if not n:
            return False
        wait = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (n - 1))
        if now >= (last or 0) + wait:
            return False
        if self.backoff_said.get(row.id) != last:
            self.backoff_said[row.id] = last
            job_id, reason = session.execute(
                select(tables.Job.id, tables.Job.reason)
                .where(*recent)
                .order_by(tables.Job.end_time.desc())
                .limit(1)
            ).one()
            services.event(
                session,
                row.id,
                f"replica job {job_id} failed ({reason}; wanka logs {job_id}); {n} in the last "
                f"{FAILURES_WINDOW_S / 60:g} min: the next starts {wait:g} s after it (back-off)",
                now,
            )
        return True

    def _note_ready(self, session, row, ready: set[int], now: float) -> None:
        seen = self.ready_seen.get(row.id, set())
        for job_id in sorted(ready - seen):
            services.event(session, row.id, f"replica job {job_id} ready", now)
        for job_id in sorted(seen - ready):
            services.event(session, row.id, f"replica job {job_id} out of rotation", now)
        self.ready_seen[row.id] = set(ready)
