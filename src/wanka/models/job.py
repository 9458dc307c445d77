"""The job spec: the YAML a tenant submits (and the twin reads)."""

from __future__ import annotations

import itertools
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wanka.core.eligibility import format_dependencies, parse_array, parse_dependencies
from wanka.core.hardware import UnknownAccelerator
from wanka.core.jobs import PRIORITY_CLASSES, Job, JobKind, TaskGroup
from wanka.models.bounds import (
    MAX_ARGS,
    MAX_ARRAY_ELEMENTS,
    MAX_CPUS_PER_TASK,
    MAX_ENV_VARS,
    MAX_EXEC_BYTES,
    MAX_MEMORY_GIB_PER_TASK,
    MAX_REPLICAS,
    MAX_SECONDS,
    ArgText,
    LabelText,
    NameText,
    Text,
    exec_bytes,
)
from wanka.models.errors import from_validation_error, load_yaml
from wanka.models.hardware import default_catalog

STRICT = ConfigDict(extra="forbid")
_ids = itertools.count(1)


class TaskGroupSpec(BaseModel):
    model_config = STRICT
    role: str = Field(default="worker", max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # strict: a count is a JSON integer, not "1" nor true (which lax parsing would turn into 1)
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS, strict=True)
    min_replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS, strict=True)
    cards: int = Field(default=1, ge=0, le=64, strict=True)
    accelerators: list[NameText] = Field(
        default=[], max_length=32, description="accepted models or vendors; empty = any"
    )
    cpus: int = Field(default=0, ge=0, le=MAX_CPUS_PER_TASK, strict=True, description="CPUs per task")
    memory_gib: int = Field(
        default=0, ge=0, le=MAX_MEMORY_GIB_PER_TASK, strict=True, description="GiB per task"
    )
    tasks_per_node: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_REPLICAS,
        description="at most this many of the group's tasks on one node (Slurm's --ntasks-per-node; "
        "1: every task on its own node)",
    )

    @field_validator("accelerators")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        catalog = default_catalog()
        for name in v:
            if name in catalog or name.lower() in catalog.vendors:
                continue
            raise ValueError(str(UnknownAccelerator(name, [*catalog.ids(), *sorted(catalog.vendors)])))
        return v

    @model_validator(mode="after")
    def _min(self):
        if self.min_replicas is not None and self.min_replicas > self.replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must not exceed replicas ({self.replicas})")
        if self.tasks_per_node is not None and (self.min_replicas or self.replicas) < self.replicas:
            raise ValueError("tasks_per_node is for groups of a fixed size; leave out min_replicas with it")
        return self


class RestartSpec(BaseModel):
    model_config = STRICT
    max: int = Field(default=0, ge=0, le=1000, description="restarts after a failure before it fails")


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def env_names(v: dict[str, str], reserved: tuple[str, ...] = ()) -> dict[str, str]:
    """Environment variable names as a shell would take them; ``WANKA_*`` and ``reserved`` are
    wanka's to set."""
    for name in v:
        if (
            not name
            or not (name[0].isalpha() or name[0] == "_")
            or not all(c.isalnum() or c == "_" for c in name)
        ):
            raise ValueError(
                f"environment variable name {name!r}: letters, digits and _ only, not first a digit"
            )
        if name.startswith("WANKA_") or name in reserved:
            raise ValueError(f"environment variable {name!r}: {name} is set by wanka")
    return v


def priority_class(v: str) -> str:
    if v not in PRIORITY_CLASSES:
        raise ValueError(f"unknown priority class {v!r}; choose one of {', '.join(PRIORITY_CLASSES)}")
    return v


class JobSpec(BaseModel):
    model_config = STRICT
    name: LabelText = Field(default="", max_length=200)
    tenant: NameText = Field(default="default", pattern=NAME_PATTERN)
    queue: NameText = Field(default="default", pattern=NAME_PATTERN)
    kind: JobKind = JobKind.TRAINING
    priority_class: str = Field(default="normal", max_length=32)
    task_groups: list[TaskGroupSpec] = Field(min_length=1, max_length=64)
    time_limit_s: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, allow_inf_nan=False, description="seconds"
    )
    preemptible: bool | None = None
    checkpoint_interval_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    command: list[ArgText] = Field(
        default=[],
        max_length=MAX_ARGS,
        description="argv of every task, run without a shell (the twin ignores it)",
    )
    env: dict[ArgText, ArgText] = Field(
        default={}, max_length=MAX_ENV_VARS, description="extra environment variables of every task"
    )
    workdir: Text | None = Field(
        default=None,
        max_length=4096,
        pattern=r"^/",
        description="absolute directory the tasks start in (default: the run's own directory)",
    )
    restart: RestartSpec = Field(
        default_factory=RestartSpec,
        description="requeue after a failed task or a lost node, resuming from WANKA_CHECKPOINT_DIR",
    )
    dependency: str | None = Field(
        default=None,
        max_length=4000,
        description="when it may start, as sbatch --dependency: afterok:12:13,afterany:14,singleton "
        "(core.eligibility)",
    )
    array: str | None = Field(
        default=None,
        max_length=1000,
        description="one job per index, as sbatch --array: 0-999:2%50 (range, step, most running "
        "at once); each element gets WANKA_ARRAY_INDEX",
    )

    @field_validator("dependency")
    @classmethod
    def _dependency(cls, v: str | None) -> str | None:
        if v is not None:
            v = format_dependencies(parse_dependencies(v))  # one spelling, checked
        return v

    @field_validator("array")
    @classmethod
    def _array(cls, v: str | None) -> str | None:
        if v is not None:
            parse_array(v, MAX_ARRAY_ELEMENTS)
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        return env_names(v)

    @field_validator("env")
    @classmethod
    def _exec_size(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        size = exec_bytes(info.data.get("command") or [], v)  # command is validated before env
        if size > MAX_EXEC_BYTES:
            raise ValueError(
                f"command and env take {size} bytes; a job's argv and environment together may take "
                f"at most {MAX_EXEC_BYTES} ({MAX_EXEC_BYTES // 1024} KiB, well under the kernel's ARG_MAX)"
            )
        return v

    @field_validator("priority_class")
    @classmethod
    def _class(cls, v: str) -> str:
        return priority_class(v)

    def to_job(self, job_id: str | None = None, submit_time: float = 0.0) -> Job:
        pc = PRIORITY_CLASSES[self.priority_class]
        groups = tuple(
            TaskGroup(
                g.role,
                g.replicas,
                g.cards,
                tuple(g.accelerators),
                g.cpus,
                g.memory_gib,
                g.min_replicas,
                g.tasks_per_node,
            )
            for g in self.task_groups
        )
        return Job(
            id=job_id or f"job-{next(_ids)}",
            tenant=self.tenant,
            queue=self.queue,
            groups=groups,
            name=self.name,
            priority=pc.value,
            priority_class=pc.name,
            kind=self.kind,
            time_limit_s=self.time_limit_s,
            preemptible=pc.preemptible if self.preemptible is None else self.preemptible,
            checkpoint_interval_s=self.checkpoint_interval_s,
            submit_time=submit_time,
        )


def parse_job_spec(data: dict, source: str = "job spec") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(source, exc, JobSpec) from None


def load_job_spec(path: str | Path) -> JobSpec:
    return parse_job_spec(load_yaml(path), str(path))
