"""The twin's side of ``core.eligibility``: jobs held back (in memory) until their dependencies
hold and their array has room, exactly as the control plane's ``server.gates`` does against its
database. Only dependents of a job that started or ended are looked at again."""

from __future__ import annotations

from wanka.core import Job, JobState
from wanka.core.eligibility import Ready, dependency_verdict
from wanka.core.jobs import TERMINAL_STATES


class TwinGates:
    def __init__(self, jobs: dict[str, Job]):
        self.jobs = jobs
        self.elements: dict[str, list[str]] = {}  # array id -> its elements, in submit order
        for job in jobs.values():
            if job.array_id is not None:
                self.elements.setdefault(job.array_id, []).append(job.id)
        self.held: dict[str, Job] = {}  # arrived, not yet eligible
        self.dependents: dict[str, set[str]] = {}  # a named job or array -> held jobs naming it
        self.let_in: dict[str, set[str]] = {}  # array -> elements let into the pending index, not ended
        self.why: dict[str, str] = {}  # held job -> what it waits for

    @staticmethod
    def needed(jobs) -> bool:
        return any(j.dependencies or j.array_max_running for j in jobs)

    def _state(self, job_id: str) -> JobState | None:
        job = self.jobs.get(job_id)
        if job is not None:
            return job.state
        elements = self.elements.get(job_id)
        if not elements:
            return None
        states = {self.jobs[e].state for e in elements}
        if not states <= TERMINAL_STATES:
            return JobState.PENDING
        if states == {JobState.SUCCEEDED}:
            return JobState.SUCCEEDED
        return JobState.FAILED if JobState.FAILED in states else JobState.CANCELLED

    def _started(self, job_id: str) -> bool:
        ids = self.elements.get(job_id, [job_id])
        return any(self.jobs[i].start_time is not None or self.jobs[i].state in TERMINAL_STATES for i in ids)

    def arrive(self, job: Job) -> tuple[list[Job], list[tuple[Job, str]]]:
        """A job arrives: (jobs that may enter the pending index now, (job, why) closed for good)."""
        self.held[job.id] = job
        for d in job.dependencies:
            if d.job_id:
                self.dependents.setdefault(d.job_id, set()).add(job.id)
        if job.array_max_running:
            self.dependents.setdefault(f"{job.array_id}%", set()).add(job.id)  # room in its array
        return self._judge([job.id])

    def started(self, job_id: str) -> tuple[list[Job], list[tuple[Job, str]]]:
        return self._judge(self._interested(job_id))

    def ended(self, job_id: str) -> tuple[list[Job], list[tuple[Job, str]]]:
        """``job_id`` succeeded, failed or was closed: its array has room again, and what depends
        on it is judged again."""
        job = self.jobs[job_id]
        if job.array_id is not None:
            self.let_in.get(job.array_id, set()).discard(job_id)
        return self._judge(self._interested(job_id))

    def _interested(self, job_id: str) -> list[str]:
        job = self.jobs[job_id]
        keys = [job_id]
        if job.array_id is not None:
            keys += [job.array_id, f"{job.array_id}%"]
        out: set[str] = set()
        for key in keys:
            out |= self.dependents.get(key, set())
        return sorted((i for i in out if i in self.held), key=lambda i: (self.jobs[i].submit_time, i))

    def _judge(self, ids: list[str]) -> tuple[list[Job], list[tuple[Job, str]]]:
        ready: list[Job] = []
        closed: list[tuple[Job, str]] = []
        for job_id in ids:
            job = self.held[job_id]
            verdict, why = dependency_verdict(job.dependencies, self._state, self._started)
            if verdict is Ready.YES and job.array_max_running:
                let_in = self.let_in.setdefault(job.array_id, set())
                if len(let_in) >= job.array_max_running:
                    verdict, why = Ready.WAIT, f"array throttle: {job.array_max_running} elements at once"
                else:
                    let_in.add(job_id)
            if verdict is Ready.WAIT:
                self.why[job_id] = why
                continue
            del self.held[job_id]
            self.why.pop(job_id, None)
            if verdict is Ready.YES:
                ready.append(job)
            else:
                closed.append((job, why))
        return ready, closed
