"""The service spec: a long-running server with replicas behind the gateway (docs/services.md).

A service is kept running by the control plane: each replica is a job of one task (kind
``inference``) that the core places like any other; the gateway routes requests to the ready ones
and the autoscaler (``core.autoscale``) sets how many there are. Fields follow what tenants of
dstack, SkyServe, KServe and Knative write: replicas ``{min, max}``, a readiness probe, scaling on
requests per second or requests in flight with separate up and down delays, rolling updates with a
max surge.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wanka.core.autoscale import Metric, ScalingPolicy
from wanka.models.bounds import MAX_ARGS, MAX_CPUS_PER_TASK, MAX_MEMORY_GIB_PER_TASK, ArgText, NameText, Text
from wanka.models.errors import field_path, from_validation_error, load_yaml
from wanka.models.job import NAME_PATTERN, JobSpec, TaskGroupSpec, env_names, priority_class

STRICT = ConfigDict(extra="forbid")
NOTEBOOK_COMMAND = ("python", "-m", "wanka.backends._notebook")  # [0]: the server's own interpreter
MAX_SERVICE_REPLICAS = 64  # replicas of one service; a bigger fleet is several services
# a DNS label (RFC 1123): the name is a path segment of its URL, and a host name on Kubernetes
SERVICE_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Replicas(BaseModel):
    model_config = STRICT
    min: int = Field(default=1, ge=0, le=MAX_SERVICE_REPLICAS, description="0: scale to zero when idle")
    max: int = Field(default=1, ge=1, le=MAX_SERVICE_REPLICAS)

    @model_validator(mode="after")
    def _order(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Probe(BaseModel):
    """Kubernetes' readiness probe, over HTTP: a replica gets requests once ``path`` answers 2xx or
    3xx; three failures in a row take it out again (failureThreshold 3, as Kubernetes)."""

    model_config = STRICT
    path: str = Field(default="/", max_length=512, pattern=r"^/[\x21-\x7e]*$")
    interval_s: float = Field(default=2.0, ge=0.1, le=600)
    timeout_s: float = Field(default=1.0, ge=0.1, le=60)
    initial_delay_s: float = Field(default=0.0, ge=0, le=3600)


class Scaling(BaseModel):
    """How many replicas the load asks for: ``ceil(observed / target)`` where observed is the
    requests per second (``rps``) or the requests in flight (``inflight``) averaged over
    ``window_s``; a rise must last ``scale_up_delay_s``, a fall ``scale_down_delay_s``
    (core.autoscale)."""

    model_config = STRICT
    metric: Literal["rps", "inflight"] = "rps"
    target: float = Field(
        ge=0.001, le=1_000_000, description="per replica: requests/s, or requests in flight"
    )
    window_s: float = Field(default=30.0, ge=1, le=3600, description="the average's window")
    scale_up_delay_s: float = Field(default=30.0, ge=0, le=3600)
    scale_down_delay_s: float = Field(default=300.0, ge=0, le=86400)


class UpdateStrategy(BaseModel):
    """Rolling, as a Kubernetes Deployment with maxUnavailable 0: up to ``max_surge`` new replicas
    start beside the old ones; an old one stops only when a new one is ready in its place."""

    model_config = STRICT
    type: Literal["rolling"] = "rolling"
    max_surge: int = Field(default=1, ge=1, le=MAX_SERVICE_REPLICAS)


class ServiceSpec(BaseModel):
    model_config = STRICT
    name: str = Field(max_length=63, description="a DNS label: lower-case letters, digits and -")
    kind: Literal["service", "notebook"] = Field(
        default="service",
        description="notebook: one Jupyter server for its own tenant, culled when idle or too old",
    )
    idle_timeout_s: float | None = Field(
        default=None, ge=10, le=30 * 86400, description="notebooks: culled after this long without activity"
    )
    max_lifetime_s: float | None = Field(
        default=None, ge=10, le=365 * 86400, description="notebooks: culled this long after they were started"
    )
    tenant: NameText = Field(default="default", pattern=NAME_PATTERN)
    queue: NameText = Field(default="default", pattern=NAME_PATTERN)
    priority_class: str = Field(default="normal", max_length=32)
    command: list[ArgText] = Field(
        default=[],
        max_length=MAX_ARGS,
        description="argv of every replica, run without a shell; it listens on 127.0.0.1 or the "
        "node's address at the port in $PORT",
    )
    env: dict[ArgText, ArgText] = Field(default={}, max_length=1024)
    workdir: Text | None = Field(default=None, max_length=4096, pattern=r"^/")
    port: Literal["auto"] = Field(
        default="auto",
        description="auto: the backend gives each replica a free port on its node, in $PORT "
        "(replicas share nodes here, so no fixed number could serve them all)",
    )
    replicas: Replicas = Field(default_factory=Replicas)
    cards: int = Field(default=1, ge=0, le=64, description="per replica")
    accelerators: list[NameText] = Field(
        default=[], max_length=32, description="models or vendors; empty = any"
    )
    cpus: int = Field(default=0, ge=0, le=MAX_CPUS_PER_TASK, description="per replica")
    memory_gib: int = Field(default=0, ge=0, le=MAX_MEMORY_GIB_PER_TASK, description="per replica")
    readiness: Probe = Field(default_factory=Probe)
    scaling: Scaling | None = Field(default=None, description="none: always replicas.min (or 1)")
    update: UpdateStrategy = Field(default_factory=UpdateStrategy)
    auth: bool = Field(default=True, description="false: anyone who reaches the gateway may call it")
    shared_with: list[NameText] = Field(
        default=[], max_length=256, description="other tenants whose members may call it (auth: true)"
    )
    timeout_s: float = Field(default=60.0, ge=1, le=3600, description="a replica's silence before 504")
    wake_timeout_s: float = Field(
        default=120.0, ge=1, le=3600, description="how long a request waits for a replica to be ready"
    )

    @model_validator(mode="after")
    def _scaling(self):
        if self.replicas.max > max(self.replicas.min, 1) and self.scaling is None:
            raise ValueError(
                f"replicas.max ({self.replicas.max}) above replicas.min needs scaling: "
                "{metric: rps|inflight, target: N}"
            )
        if self.replicas.min == 0 and self.scaling is None:
            raise ValueError(
                "replicas.min 0 (scale to zero) needs scaling: {metric: rps|inflight, target: N}"
            )
        if self.kind == "service" and not self.command:
            raise ValueError("command: give the argv every replica runs, e.g. [python, serve.py]")
        if self.kind == "notebook":
            if self.command and tuple(self.command[1:]) != NOTEBOOK_COMMAND[1:]:
                raise ValueError("command: a notebook runs Jupyter, as wanka starts it; leave command out")
            if self.replicas.max != 1 or self.replicas.min != 1 or self.scaling is not None:
                raise ValueError("a notebook is one replica: replicas {min: 1, max: 1}, no scaling")
            if not self.auth or self.shared_with:
                raise ValueError("a notebook is its own tenant's: auth true, shared_with empty")
        elif self.idle_timeout_s is not None or self.max_lifetime_s is not None:
            raise ValueError("idle_timeout_s and max_lifetime_s are for notebooks (kind: notebook)")
        try:  # a replica's job passes the job spec's own checks (env names, sizes, classes)
            self.replica_job(True, 1)
        except ValidationError as exc:
            raise ValueError("; ".join(f"{field_path(e['loc'])}: {e['msg']}" for e in exc.errors())) from None
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(SERVICE_NAME, v):
            raise ValueError(
                f"{v!r} is not a DNS label: lower-case letters, digits and -, at most 63, "
                "starting and ending with a letter or digit"
            )
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return env_names(v, reserved=("PORT",))

    @field_validator("priority_class")
    @classmethod
    def _class(cls, v: str) -> str:
        return priority_class(v)

    @field_validator("shared_with")
    @classmethod
    def _tenants(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or not name[0].isalnum() or not all(c.isalnum() or c in "_.-" for c in name):
                raise ValueError(f"tenant name {name!r}: letters, digits, _ . - only")
        return sorted(set(v))

    def policy(self) -> ScalingPolicy:
        """The autoscaler's view (fixed at ``replicas.min``, at least 1, without ``scaling``)."""
        s = self.scaling
        if s is None:
            n = max(self.replicas.min, 1)
            return ScalingPolicy(Metric.RPS, 1.0, n, n)
        return ScalingPolicy(
            Metric(s.metric),
            s.target,
            self.replicas.min,
            self.replicas.max,
            s.window_s,
            s.scale_up_delay_s,
            s.scale_down_delay_s,
        )

    def replica_job(self, preemptible: bool, generation: int) -> JobSpec:
        """The job one replica runs as: one task of this spec's size. Replicas up to ``min`` are
        never preempted (they are what the service is guaranteed within its queue's quota); the
        others are (Run:ai's rule for inference on a shared cluster)."""
        return JobSpec(
            name=f"{self.name} v{generation}",
            tenant=self.tenant,
            queue=self.queue,
            kind="inference",
            priority_class=self.priority_class,
            preemptible=preemptible,
            task_groups=[
                TaskGroupSpec(
                    role="replica",
                    replicas=1,
                    cards=self.cards,
                    accelerators=self.accelerators,
                    cpus=self.cpus,
                    memory_gib=self.memory_gib,
                )
            ],
            command=self.command,
            env=self.env,
            workdir=self.workdir,
        )


def parse_service_spec(data: dict, source: str = "service spec") -> ServiceSpec:
    try:
        return ServiceSpec.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(source, exc, ServiceSpec) from None


def load_service_spec(path: str | Path) -> ServiceSpec:
    return parse_service_spec(load_yaml(path), str(path))


class ReplicaOut(BaseModel):
    job: int
    state: str
    generation: int
    ready: bool
    preemptible: bool
    stopping: bool = Field(description="the keeper stopped it (scaled down, replaced, deleted)")


class ServiceEventOut(BaseModel):
    time: float
    message: str


class ServiceOut(BaseModel):
    name: str
    tenant: str
    url: str = Field(description="where the gateway serves it: http://host:port/services/{tenant}/{name}/")
    generation: int
    desired: int = Field(description="replicas the autoscaler asks for now")
    ready: int
    reason: str = Field(description="the autoscaler's last decision")
    deleting: bool
    spec: dict
    replicas: list[ReplicaOut] = []
    events: list[ServiceEventOut] = []


class ServiceLink(BaseModel):
    url: str = Field(description="open it in a browser once, within expires_in_s")
    expires_in_s: float


class RequestLoad(BaseModel):
    """A simulated service's requests over the day (the twin, docs/twin.md "Services"): a cosine
    from ``trough_rps`` to ``peak_rps`` peaking at ``peak_hour``, times ``weekend`` on Saturdays
    and Sundays, times an hourly lognormal factor of sigma ``noise``."""

    model_config = STRICT
    peak_rps: float = Field(ge=0, le=10_000_000, description="requests/s at the daily peak")
    trough_rps: float = Field(default=0.0, ge=0, le=10_000_000, description="requests/s at the low")
    peak_hour: float = Field(default=14.0, ge=0, lt=24, description="hour of the day of the peak")
    weekend: float = Field(default=1.0, ge=0, le=10, description="factor on Saturdays and Sundays")
    noise: float = Field(default=0.0, ge=0, le=2, description="sigma of the hourly lognormal factor")
    latency_s: float = Field(
        default=1.0, gt=0, le=3600, description="a request's time in a replica (inflight = rate x latency)"
    )

    @model_validator(mode="after")
    def _order(self):
        if self.trough_rps > self.peak_rps:
            raise ValueError(f"trough_rps ({self.trough_rps:g}) must not exceed peak_rps ({self.peak_rps:g})")
        return self


class SimulatedService(ServiceSpec):
    """A service in the twin (``wanka simulate --services FILE``): the service spec a tenant
    applies (its command may be left out: nothing runs) plus its request curve and how long a
    replica takes to load before it is ready. ``tenant`` and ``queue`` name the simulated
    workload's queues ("default": the queue named as the tenant)."""

    command: list[ArgText] = Field(default=["simulated"], max_length=MAX_ARGS)
    load: RequestLoad
    startup_s: float = Field(default=120.0, ge=0, le=3600, description="from start to ready")

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v != "service":
            raise ValueError("the twin simulates services only (kind: service); notebooks are not simulated")
        return v


class SimulatedServices(BaseModel):
    """A ``--services`` file: ``services: [...]``."""

    model_config = STRICT
    services: list[SimulatedService] = Field(max_length=10_000)

    @model_validator(mode="after")
    def _unique(self):
        if not self.services:
            raise ValueError("services: give at least one service (a list of service specs with a load)")
        seen = set()
        for s in self.services:
            key = (s.tenant, s.queue, s.name)
            if key in seen:
                raise ValueError(f"service {s.name!r} of tenant {s.tenant!r} appears twice")
            seen.add(key)
        return self


def load_simulated_services(path: str | Path) -> SimulatedServices:
    """Raises SpecError naming the file and the field."""
    try:
        return SimulatedServices.model_validate(load_yaml(path))
    except ValidationError as exc:
        raise from_validation_error(str(path), exc, SimulatedServices) from None
