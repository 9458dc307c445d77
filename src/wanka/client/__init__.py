"""The Python SDK of the control plane. The ``wanka`` CLI talks to the server only through it.

from wanka.client import Client
c = Client.from_config()              # what `wanka login` stored, or $WANKA_URL / $WANKA_TOKEN
job = c.submit({"task_groups": [{"replicas": 2, "cards": 8}], "command": ["python", "train.py"]})
c.job(job["id"])["state"]
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

# httpx imports its own command line (click, pygments, rich.progress) when it can; wanka never runs
# it, and each `wanka` call would pay ~20-40 ms for it. A None entry makes that import fail, which
# httpx expects (it then defines a stub `httpx.main`).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

DEFAULT_URL = "http://127.0.0.1:8421"


class WankaError(Exception):
    """The server refused a request: ``status`` and its ``detail`` (a message, or a list of
    ``{"field", "message"}`` problems)."""

    def __init__(self, status: int, detail: Any):
        self.status = status
        self.detail = detail
        if isinstance(detail, list):
            text = "; ".join(f"{p.get('field', '?')}: {p.get('message', p)}" for p in detail)
        else:
            text = str(detail)
        super().__init__(f"{status}: {text}" if status else text)  # 0: no answer at all


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(os.environ.get("WANKA_CONFIG") or Path(base) / "wanka" / "client.json")


def save_login(url: str, token: str, path: Path | None = None) -> Path:
    """Store the server and token for later commands, readable by the owner only."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token}, fh)
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return path


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.token = token
        # an https server's certificate is checked against the system's CAs; for plain http there
        # is no TLS at all, and loading the CA bundle would cost every CLI call ~60 ms for nothing
        tls = self.url.startswith("https://")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=tls)

    @classmethod
    def from_config(cls, path: Path | None = None) -> Client:
        """$WANKA_URL and $WANKA_TOKEN win over the file `wanka login` wrote."""
        stored: dict = {}
        path = path or config_path()
        if path.exists():
            stored = json.loads(path.read_text())
        url = os.environ.get("WANKA_URL") or stored.get("url") or DEFAULT_URL
        token = os.environ.get("WANKA_TOKEN") or stored.get("token")
        return cls(url, token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs) -> Any:
        if "json" in kwargs:  # NaN and infinities go as JSON5 literals: the server names the field
            kwargs["content"] = json.dumps(kwargs.pop("json"), allow_nan=True)
            kwargs["headers"] = {**kwargs.get("headers", {}), "content-type": "application/json"}
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise WankaError(0, f"cannot reach {self.url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise WankaError(r.status_code, detail)
        return r.json()

    # --- who, tenants, users, tokens --------------------------------------------------------------

    def health(self) -> dict:
        """The server's ``/healthz`` (no token needed): up, and whether it schedules."""
        return self._call("GET", "/healthz")

    def whoami(self) -> dict:
        return self._call("GET", "/v1/whoami")

    def create_tenant(self, name: str) -> dict:
        return self._call("POST", "/v1/tenants", json={"name": name})

    def tenants(self) -> list[dict]:
        return self._call("GET", "/v1/tenants")

    def user(self, name: str) -> dict:
        """One user: name, role, tenant (admins)."""
        return self._call("GET", f"/v1/users/{quote(name, safe='')}")

    def create_user(self, name: str, role: str = "member", tenant: str | None = None) -> dict:
        return self._call("POST", "/v1/users", json={"name": name, "role": role, "tenant": tenant})

    def create_token(self, user: str, label: str = "", expires_in_s: float | None = None) -> dict:
        """A new token for ``user``; the ``token`` field is shown this once. With
        ``expires_in_s`` it stops working that many seconds from now."""
        body = {"label": label, "expires_in_s": expires_in_s}
        return self._call("POST", f"/v1/users/{_segment(user)}/tokens", json=body)

    def set_tenant_enabled(self, name: str, enabled: bool) -> dict:
        """Disable (its members' tokens stop, its jobs are cancelled, its bills stay) or enable."""
        verb = "enable" if enabled else "disable"
        return self._call("POST", f"/v1/tenants/{_segment(name)}/{verb}")

    def set_user_enabled(self, name: str, enabled: bool) -> dict:
        verb = "enable" if enabled else "disable"
        return self._call("POST", f"/v1/users/{_segment(name)}/{verb}")

    def tokens(self) -> list[dict]:
        return self._call("GET", "/v1/tokens")

    def revoke_token(self, token_id: int) -> dict:
        return self._call("DELETE", f"/v1/tokens/{int(token_id)}")

    # --- jobs -------------------------------------------------------------------------------------

    def submit(
        self, spec: dict, idempotency_key: str | None = None, attempts: int = 3, hold: bool = False
    ) -> dict:
        """Submit a job (``hold``: held until released). Every submission carries an
        ``Idempotency-Key`` (a random one unless given), and one whose reply is lost on the way (a
        dropped connection, a timeout) is sent again with it, up to ``attempts`` times: the server
        hands back the job the first one made, never a second job."""
        key = idempotency_key or uuid.uuid4().hex
        params = {"hold": "true"} if hold else {}
        for attempt in range(attempts):
            try:
                return self._call(
                    "POST", "/v1/jobs", json=spec, params=params, headers={"Idempotency-Key": key}
                )
            except WankaError as exc:
                if exc.status != 0 or attempt == attempts - 1:  # 0: no reply at all
                    raise
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def jobs(
        self,
        state: str | None = None,
        queue: str | None = None,
        tenant: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
        array: int | None = None,
    ) -> dict:
        """One page, newest first: ``{"jobs": [...], "next_before_id": id or None}``; with
        ``array``, only that job array's elements."""
        params = {
            "state": state,
            "queue": queue,
            "tenant": tenant,
            "limit": limit,
            "before_id": before_id,
            "array": array,
        }
        return self._call("GET", "/v1/jobs", params={k: v for k, v in params.items() if v is not None})

    def job(self, job_id: int) -> dict:
        return self._call("GET", f"/v1/jobs/{int(job_id)}")

    def events(self, job_id: int) -> list[dict]:
        return self._call("GET", f"/v1/jobs/{int(job_id)}/events")

    def cancel(self, job_id: int, array: bool = False) -> dict:
        """Cancel a job; with ``array``, every unfinished element of the job array ``job_id``."""
        return self._call("POST", f"/v1/jobs/{int(job_id)}/cancel", params=_array(array))

    def hold(self, job_id: int, array: bool = False) -> dict:
        """Keep a waiting job (or every waiting element of an array) from starting until released."""
        return self._call("POST", f"/v1/jobs/{int(job_id)}/hold", params=_array(array))

    def release(self, job_id: int, array: bool = False) -> dict:
        return self._call("POST", f"/v1/jobs/{int(job_id)}/release", params=_array(array))

    def requeue(self, job_id: int, array: bool = False, queue: str | None = None) -> dict:
        """A finished job (or every finished element of an array) waits again (same id, spec and
        checkpoints; a new run), in ``queue`` if given."""
        params = {**_array(array), **({"queue": queue} if queue else {})}
        return self._call("POST", f"/v1/jobs/{int(job_id)}/requeue", params=params)

    def update(
        self, job_id: int, priority_class: str | None = None, time_limit_s: float | None = None
    ) -> dict:
        """Change a waiting job's priority class or time limit (seconds)."""
        body = {"priority_class": priority_class, "time_limit_s": time_limit_s}
        return self._call(
            "PATCH", f"/v1/jobs/{int(job_id)}", json={k: v for k, v in body.items() if v is not None}
        )

    def logs(self, job_id: int, task: int = 0, offset: int = 0, run: int | None = None) -> dict:
        """A chunk of a task's output from ``offset``: ``data``, ``next_offset``, ``finished``."""
        params = {"task": task, "offset": offset, **({"run": run} if run else {})}
        return self._call("GET", f"/v1/jobs/{int(job_id)}/logs", params=params)

    def follow(self, job_id: int, task: int = 0, run: int | None = None, poll_s: float = 0.5):
        """Yield a task's output as it is written, until the job has ended and all is read. A job
        that has not started yet is waited for (it ends the stream if it ends without starting)."""
        offset = 0
        while True:
            try:
                chunk = self.logs(job_id, task, offset, run)
            except WankaError as exc:
                if exc.status != 409:  # 409: not started yet
                    raise
                if self.job(job_id)["state"] in ("succeeded", "failed", "cancelled"):
                    return
                time.sleep(poll_s)
                continue
            if chunk["data"]:
                yield chunk["data"]
            offset = chunk["next_offset"]
            if chunk["finished"] and not chunk["data"]:
                return
            if not chunk["data"]:
                time.sleep(poll_s)

    # --- usage and prices -------------------------------------------------------------------------

    def usage(
        self,
        month: str | None = None,
        tenant: str | None = None,
        first_day: str | None = None,
        last_day: str | None = None,
    ) -> dict:
        """Card-hours, PFLOP-hours and bills for a month (YYYY-MM) or days (YYYY-MM-DD, both
        included); default this month."""
        params = {"month": month, "tenant": tenant, "from": first_day, "to": last_day}
        return self._call("GET", "/v1/usage", params={k: v for k, v in params.items() if v})

    def acct(
        self,
        start: float | None = None,
        end: float | None = None,
        state: str | None = None,
        job: int | None = None,
        tenant: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> dict:
        """Accounting (sacct): jobs waiting or running between ``start`` and ``end`` (UNIX seconds),
        newest first, each with its tasks: ``{"jobs": [...], "next_before_id": id or None}``."""
        params = {
            "start": start,
            "end": end,
            "state": state,
            "job": job,
            "tenant": tenant,
            "limit": limit,
            "before_id": before_id,
        }
        return self._call("GET", "/v1/acct", params={k: v for k, v in params.items() if v is not None})

    def prices(self) -> dict | None:
        return self._call("GET", "/v1/prices")

    def apply_prices(self, table: dict) -> dict:
        return self._call("PUT", "/v1/prices", json=table)

    # --- cluster, nodes, queues -------------------------------------------------------------------

    def cluster(self) -> dict:
        return self._call("GET", "/v1/cluster")

    def nodes(self) -> list[dict]:
        return self._call("GET", "/v1/nodes")

    def drain(self, node: str, reason: str = "") -> dict:
        return self._call("POST", f"/v1/nodes/{_segment(node)}/drain", json={"reason": reason})

    def undrain(self, node: str) -> dict:
        return self._call("POST", f"/v1/nodes/{_segment(node)}/undrain")

    def queues(self) -> list[dict]:
        return self._call("GET", "/v1/queues")

    def hold_queue(self, queue: str, reason: str = "") -> dict:
        """Admins: the queue's jobs wait however much is free (running ones run on)."""
        return self._call("POST", f"/v1/queues/{_segment(queue)}/hold", json={"reason": reason})

    def release_queue(self, queue: str) -> dict:
        return self._call("POST", f"/v1/queues/{_segment(queue)}/release")

    def apply_quotas(self, document: dict) -> dict:
        return self._call("PUT", "/v1/quotas", json=document)

    # --- services -------------------------------------------------------------------------------

    def apply_service(self, spec: dict) -> dict:
        """Create or change a service (models.service); the service as it is now."""
        return self._call("PUT", "/v1/services", json=spec)

    def services(self, tenant: str | None = None) -> list[dict]:
        return self._call("GET", "/v1/services", params={"tenant": tenant} if tenant else {})

    def service(self, name: str, tenant: str | None = None) -> dict:
        """One service with its replicas and its latest events."""
        return self._call(
            "GET", f"/v1/services/{_segment(name)}", params={"tenant": tenant} if tenant else {}
        )

    def service_link(self, name: str, tenant: str | None = None) -> dict:
        """A one-time link that opens the service (a notebook: JupyterLab) in a browser."""
        params = {"tenant": tenant} if tenant else {}
        return self._call("POST", f"/v1/services/{_segment(name)}/link", params=params)

    def delete_service(self, name: str, tenant: str | None = None) -> dict:
        return self._call(
            "DELETE", f"/v1/services/{_segment(name)}", params={"tenant": tenant} if tenant else {}
        )


def _array(whole: bool) -> dict:
    return {"array": "true"} if whole else {}


def _segment(name: str) -> str:
    """A user string as one path segment: it cannot climb out of the path it is put in."""
    quoted = quote(name, safe="")
    return quoted.replace(".", "%2E") if set(name) <= {"."} else quoted
