"""What the Kubernetes backend keeps of each run, beside the run's directory under the server's
home (the server's alone: nothing a job or a tenant can write), so a restarted server knows
which pods are wanka's and how ended tasks ended:

- ``runs/JOB/RUN.namespace``: the namespace the run's pods were made in (written before them);
- ``runs/JOB/RUN.uids``: the uid the API server gave each pod wanka made (a pod of the same name
  or labels with another uid is someone else's);
- ``runs/JOB/RUN.pods``: for others' pods, which pod each task of the run was bound to;
- ``runs/JOB/RUN/task-N.log`` and ``task-N.exit``: an ended task's output and exit code.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from wanka.backends import isolation
from wanka.backends.base import TaskState, TaskStatus

KEPT_LOG_MAX = 256 * 2**20  # bytes of an ended pod's log kept


class RunRecords:
    def __init__(self, runs: Path):
        self.runs = runs
        self._namespaces: dict[tuple[int, int], str] = {}
        self._uids: dict[tuple[int, int], dict[int, str]] = {}
        self._lock = threading.Lock()

    def run_dir(self, job_id: int, run: int) -> Path:
        return self.runs / str(job_id) / str(run)

    def _write(self, path: Path, data: bytes) -> None:
        isolation.private_dir(path.parent, None)
        isolation.write_file(path, data)

    # the namespace of a run's pods

    def namespace(self, job_id: int, run: int) -> str | None:
        ns = self._namespaces.get((job_id, run))
        if ns is None:
            try:
                ns = (self.runs / str(job_id) / f"{run}.namespace").read_text()
            except OSError:
                return None
            self._namespaces[(job_id, run)] = ns
        return ns

    def mark_namespace(self, job_id: int, run: int, namespace: str) -> None:
        self._write(self.runs / str(job_id) / f"{run}.namespace", namespace.encode())
        self._namespaces[(job_id, run)] = namespace

    # the pods wanka made, by uid

    def uid(self, job_id: int, run: int, task: int) -> str | None:
        uids = self._uids.get((job_id, run))
        if uids is None:
            try:
                doc = json.loads((self.runs / str(job_id) / f"{run}.uids").read_text())
                uids = {int(t): str(u) for t, u in doc.items()}
            except (OSError, ValueError, AttributeError):
                return None
            self._uids[(job_id, run)] = uids
        return uids.get(task)

    def mark_uid(self, job_id: int, run: int, task: int, uid: str) -> None:
        with self._lock:  # a run's pods are made side by side
            self.uid(job_id, run, task)  # what is on disk first
            uids = self._uids.setdefault((job_id, run), {})
            uids[task] = uid
            self._write(self.runs / str(job_id) / f"{run}.uids", json.dumps(uids).encode())

    # others' pods a run was bound to

    def foreign_runs(self, job_id: int) -> dict[int, dict[str, str]]:
        """run -> {task: "namespace/pod"} for each run of the job bound to others' pods."""
        out = {}
        for record in (self.runs / str(job_id)).glob("*.pods"):
            try:
                out[int(record.stem)] = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
        return out

    def mark_foreign(self, job_id: int, run: int, pods: dict[str, str]) -> None:
        self._write(self.runs / str(job_id) / f"{run}.pods", json.dumps(pods).encode())

    # how tasks ended

    def end(self, job_id: int, run: int, task: int) -> TaskStatus | None:
        try:
            doc = json.loads((self.run_dir(job_id, run) / f"task-{task}.exit").read_text())
        except (OSError, ValueError):
            return None
        return TaskStatus(task, TaskState.EXITED, doc.get("code"), doc.get("ended_at"), doc.get("note", ""))

    def keep(
        self, job_id: int, run: int, task: int, ended: TaskStatus | None = None, log: bytes | None = None
    ) -> None:
        """Keep a task's log (when given) and then its end (when given): a reader that sees the
        end finds the log already there."""
        rundir = self.run_dir(job_id, run)
        isolation.private_dir(rundir.parent, None)
        if log is not None:
            self._write(rundir / f"task-{task}.log", log)
        if ended is not None:
            record = {"code": ended.exit_code, "ended_at": ended.ended_at, "note": ended.note}
            self._write(rundir / f"task-{task}.exit", json.dumps(record).encode())

    def log_path(self, job_id: int, run: int, task: int) -> Path:
        return self.run_dir(job_id, run) / f"task-{task}.log"
