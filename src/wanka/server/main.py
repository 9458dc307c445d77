"""Starting the control plane: settings, migrations, the first admin, the app."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from wanka.backends import make_backend
from wanka.core import get_policy
from wanka.core.config import with_las_thresholds
from wanka.models.cluster import load_cluster, parse_cluster
from wanka.server import auth, cluster_api, db, tables
from wanka.server.app import AppState, create_app
from wanka.server.gateway.board import Board
from wanka.server.gateway.proxy import Gateway
from wanka.server.limits import Limits
from wanka.server.loop import DOWN_IN_INVENTORY, ControlLoop
from wanka.server.service_keeper import ServiceKeeper
from wanka.server.trees import TreeCache
from wanka.server.whatif import WhatIfRuns

DEFAULT_PORT = 8421
DEFAULT_TASK_UIDS = (2_000_000, 2_099_999)  # far above the distribution's and LDAP's usual ranges


def wanka_home() -> Path:
    return Path(os.environ.get("WANKA_HOME") or Path.home() / ".local" / "share" / "wanka")


@dataclass(frozen=True)
class Settings:
    home: Path
    database: str  # SQLAlchemy URL
    cluster: str | None = None  # preset or spec file; None: what the backend reports
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    backend: str = "local"
    virtual_cards: int | None = None  # local backend: offer this many virtual cards
    virtual_nodes: int = 1  # local backend: as this many nodes
    accelerator: str | None = None  # local backend: the model of the cards
    health_check: tuple[str, ...] = ()  # local backend: argv run per node; non-zero marks it down
    slurm_conf: str | None = None  # slurm backend: SLURM_CONF (default: the environment's)
    slurm_partition: str | None = None  # slurm backend: only this partition's nodes
    shared_dir: Path | None = None  # slurm, kubernetes: checkpoints (and Slurm's runs); default: the home
    kubeconfig: str | None = None  # kubernetes backend: the kubeconfig (default $KUBECONFIG, in-cluster)
    k8s_namespace: str = "wanka"  # kubernetes backend: the namespace of every tenant's pods
    namespace_per_tenant: bool = False  # kubernetes backend: each tenant's pods in wanka-TENANT
    pod_template: Path | None = None  # kubernetes backend: a Pod YAML every task's pod starts from
    topology_labels: tuple[str, ...] | None = None  # kubernetes backend: node labels, outermost first
    policy: str = "wanka"
    las_thresholds: tuple[float, ...] | None = None  # LAS queue limits, card-seconds (LAS presets)
    tick_s: float = 1.0  # the control loop's period (it also wakes on every submit and cancel)
    grace_s: float = 10.0  # SIGTERM to SIGKILL when stopping tasks
    health_every_s: float = 10.0  # between health checks of the nodes
    limits: Limits = field(default_factory=Limits)  # request size, tasks per job, running tasks per tenant
    single_user: bool = False  # local backend: every task runs as the server's own user (no isolation)
    task_uids: tuple[int, int] = DEFAULT_TASK_UIDS  # local backend as root: tenant accounts' uids
    processes_per_tenant: int | None = None  # local backend as root: RLIMIT_NPROC of a tenant's account

    @classmethod
    def default(cls, **overrides) -> Settings:
        home = Path(overrides.pop("home", None) or wanka_home())
        database = overrides.pop("database", None) or f"sqlite:///{home / 'wanka.db'}"
        return cls(home=home, database=database, **{k: v for k, v in overrides.items() if v is not None})


def load_pod_template(path: Path) -> dict:
    """A Pod manifest (YAML) every task's pod is made from: image, volumes, mounts, node-level
    settings. Raises ValueError naming the file and what is wrong."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"--pod-template: {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind", "Pod") != "Pod":
        raise ValueError(f"--pod-template: {path}: not a Pod manifest (kind: Pod)")
    containers = (doc.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        raise ValueError(f"--pod-template: {path}: spec.containers[0] (the image tasks run in) is missing")
    if not containers[0].get("image"):
        raise ValueError(f"--pod-template: {path}: spec.containers[0].image is missing")
    return doc


def bootstrap_admin(sessions, home: Path) -> Path | None:
    """On the first start: the user ``admin`` and a token, written to a file only its owner can read.
    Returns that file, or None when an admin already exists."""
    with sessions() as session:
        if session.scalar(select(tables.User).where(tables.User.role == "admin").limit(1)):
            return None
        user = tables.User(name="admin", role="admin", tenant_id=None, created_at=time.time())
        session.add(user)
        session.flush()
        _, token = auth.issue(session, user, "first admin token")
        path = home / "admin-token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        session.commit()  # after the file: a crash in between leaves no admin without a token
        return path


def _make_passable(home: Path) -> None:
    """Create ``home`` and any missing directory above it passable by others (0711: tasks under
    tenant accounts reach their own directories below; nobody lists anything)."""
    missing = [d for d in (home, *home.parents) if not d.exists()]
    for d in reversed(missing):
        d.mkdir(mode=0o711, exist_ok=True)
        os.chmod(d, 0o711)  # mkdir's mode passes through the umask


def _url_of(sock) -> str:
    if sock is None:
        return ""
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{host}:{port}"


def build(settings: Settings, gateway_socket=None):
    """Migrate, bootstrap, load the scheduler's state and return (app, admin-token file or None).
    The control loop starts with the app and stops with it."""
    # everything the server creates is its own alone: database, tokens, logs, run records
    os.umask(0o077)
    _make_passable(settings.home)
    for entry in settings.home.iterdir():  # files an older version left readable
        if entry.is_file() and not entry.is_symlink() and entry.stat().st_uid == os.geteuid():
            entry.chmod(0o600)
    db.upgrade(settings.database)
    engine = db.make_engine(settings.database)
    sessions = db.sessions(engine)
    token_file = bootstrap_admin(sessions, settings.home)
    options = {}
    if settings.backend == "local":
        options = {
            "virtual_cards": settings.virtual_cards,
            "virtual_nodes": settings.virtual_nodes,
            "accelerator": settings.accelerator,
            "health_check": list(settings.health_check) or None,
            "single_user": settings.single_user,
            "task_uids": settings.task_uids,
            "processes_per_tenant": settings.processes_per_tenant,
        }
    elif settings.backend == "slurm":
        options = {
            "conf": settings.slurm_conf,
            "partition": settings.slurm_partition,
            "shared": settings.shared_dir,
            "single_user": settings.single_user,
            "task_uids": settings.task_uids,
        }
    elif settings.backend == "kubernetes":
        options = {
            "kubeconfig": settings.kubeconfig,
            "namespace": settings.k8s_namespace,
            "namespace_per_tenant": settings.namespace_per_tenant,
            "pod_template": load_pod_template(settings.pod_template) if settings.pod_template else None,
            "shared": settings.shared_dir,
            "single_user": settings.single_user,
            "task_uids": settings.task_uids,
            "grace_s": max(1, math.ceil(settings.grace_s)),
        }
        if settings.topology_labels is not None:
            options["topology_labels"] = settings.topology_labels
    backend = make_backend(settings.backend, settings.home, **options)
    inventory = None
    if settings.cluster:
        cluster = load_cluster(settings.cluster)
    else:
        inventory = backend.cluster_spec()
        cluster = parse_cluster(inventory, f"the {backend.name} backend's inventory")
    # drains recorded before a restart still hold
    cluster_api.sync_nodes(sessions, cluster, DOWN_IN_INVENTORY if inventory else "down in the cluster spec")
    trees = TreeCache(cluster)
    loop = ControlLoop(
        sessions,
        cluster,
        backend,
        with_las_thresholds(get_policy(settings.policy), settings.las_thresholds),
        trees.get,
        interval_s=settings.tick_s,
        grace_s=settings.grace_s,
        health_every_s=settings.health_every_s,
        inventory=inventory,
        on_cluster_change=trees.invalidate,
        limits=settings.limits,
    )
    board = Board(sessions)
    loop.services = ServiceKeeper(sessions, board, loop.notify, trees.get)
    gateway = Gateway(sessions, board, lambda service_id: loop.notify("service", service_id))
    state = AppState(
        sessions,
        cluster,
        loop,
        trees,
        settings.limits,
        WhatIfRuns(settings.home / "twin"),
        board=board,
        gateway=gateway,
        gateway_socket=gateway_socket,
        gateway_url=_url_of(gateway_socket),
    )
    if hasattr(backend, "foreign_work"):  # Kubernetes: pods others made for wanka become jobs
        from wanka.server.k8s_intake import KubeIntake

        loop.intake = KubeIntake(state, backend)
    return create_app(state), token_file
