"""`wanka server` and `wanka db …`: run the control plane, manage its database."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from wanka.cli.output import console, errors, fail

app = typer.Typer(help="The control plane's database.", no_args_is_help=True, add_completion=False)

# The local backend runs every task on this one machine, each under a supervisor process (~10 MB):
# its defaults keep a wide job from costing the machine more than its cards are worth.
LOCAL_TASKS_PER_JOB = 256
LOCAL_RUNNING_PER_TENANT = 512

# the database of `wanka db …` (a password belongs in WANKA_DATABASE or ~/.pgpass, never argv)
DATABASE = typer.Option(
    None, "--database", envvar="WANKA_DATABASE", help="SQLAlchemy URL (default: SQLite under $WANKA_HOME)."
)


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(
        8421, "--port", min=1, max=65535, envvar="WANKA_PORT", help="Port to listen on."
    ),
    database: str = typer.Option(
        None,
        "--database",
        envvar="WANKA_DATABASE",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@127.0.0.1/wanka (default: SQLite under "
        "$WANKA_HOME). A password belongs in WANKA_DATABASE or ~/.pgpass: a command line is world-readable.",
    ),
    cluster: str = typer.Option(
        None, "--cluster", help="Cluster preset or spec file (default: what the backend finds here)."
    ),
    home: Path = typer.Option(
        None, "--home", help="State directory (default $WANKA_HOME or ~/.local/share/wanka)."
    ),
    backend: str = typer.Option("local", "--backend", help="Where jobs run: local, slurm or kubernetes."),
    kubeconfig: str = typer.Option(
        None, "--kubeconfig", help="kubernetes: the kubeconfig (default $KUBECONFIG, else in-cluster)."
    ),
    namespace_per_tenant: bool = typer.Option(
        False,
        "--namespace-per-tenant",
        help="kubernetes: each tenant's pods in its own namespace wanka-TENANT.",
    ),
    k8s_namespace: str = typer.Option(
        "wanka", "--namespace", help="kubernetes: the namespace of all pods (without --namespace-per-tenant)."
    ),
    pod_template: Path = typer.Option(
        None,
        "--pod-template",
        help="kubernetes: a Pod YAML each task's pod starts from (its image, volumes, mounts); wanka sets "
        "the command, env, resources, labels and node.",
    ),
    topology_labels: str = typer.Option(
        None,
        "--topology-labels",
        help="kubernetes: node labels naming network domains, outermost first, comma-separated "
        "(default network.topology.kubernetes.io/block,network.topology.kubernetes.io/rack).",
    ),
    slurm_conf: str = typer.Option(None, "--slurm-conf", help="slurm: the slurm.conf (default $SLURM_CONF)."),
    shared_dir: Path = typer.Option(
        None,
        "--shared-dir",
        help="slurm, kubernetes: where checkpoints (and Slurm's runs) live, on a file system every node "
        "mounts at the same path (default: the home; keep the home itself, with the database and "
        "tokens, off the shared file system).",
    ),
    partition: str = typer.Option(None, "--partition", help="slurm: schedule only this partition's nodes."),
    virtual_cards: int = typer.Option(
        None,
        "--virtual-cards",
        min=1,
        max=4096,
        help="local: offer N virtual cards (default: the cards found here, else 8 virtual).",
    ),
    virtual_nodes: int = typer.Option(
        1, "--virtual-nodes", min=1, max=512, help="local: present the cards as N nodes (multi-node gangs)."
    ),
    accelerator: str = typer.Option(
        None, "--accelerator", help="local: the model of the cards (default ascend-910c when virtual)."
    ),
    health_check: str = typer.Option(
        None,
        "--health-check",
        help="local: a program run per node every 10 s (WANKA_NODE names it); non-zero takes it down.",
    ),
    health_every: float = typer.Option(
        10.0, "--health-every", min=0.1, max=3600, help="Seconds between health checks of the nodes."
    ),
    policy: str = typer.Option("wanka", "--policy", help="Scheduling policy preset."),
    las_thresholds: str = typer.Option(
        "",
        "--las-thresholds",
        help="LAS queue limits (card-seconds) for presets that order by LAS (wanka, wanka-las, "
        "tiresias), e.g. 3250,7200, or a named set: wanka (3600,36000, the wanka preset's), "
        "tiresias (3600, the others'), tiresias-released (3250,7200). Default: the preset's own.",
    ),
    tick: float = typer.Option(1.0, "--tick", min=0.01, max=60, help="Control loop period in seconds."),
    grace: float = typer.Option(
        10.0, "--grace", min=0, max=3600, help="Seconds from SIGTERM to SIGKILL when stopping tasks."
    ),
    single_user: bool = typer.Option(
        False,
        "--single-user",
        help="local: run every task as this server's own user, with no isolation between tenants "
        "(what a non-root server does anyway; without this flag it runs one tenant's jobs only).",
    ),
    task_uids: str = typer.Option(
        "2000000-2099999",
        "--task-uids",
        help="local, as root: the uid range of tenant accounts (uid = first + tenant id).",
    ),
    max_processes: int = typer.Option(
        None,
        "--max-processes-per-tenant",
        min=16,
        max=4_194_304,
        help="local, as root: most processes one tenant's tasks may have at once (RLIMIT_NPROC; "
        "default a quarter of kernel.pid_max, at most 16384).",
    ),
    max_connections: int = typer.Option(
        1024,
        "--max-connections",
        min=16,
        max=1_000_000,
        help="Open connections at most (503 past it), kept below the descriptor limit.",
    ),
    max_body: int = typer.Option(
        1024 * 1024, "--max-body-bytes", min=1024, max=1 << 30, help="Largest request body accepted."
    ),
    max_tasks: int = typer.Option(
        None,
        "--max-tasks-per-job",
        min=1,
        max=100_000,
        help="Most tasks one job may ask for (default 2048; 256 on the local backend).",
    ),
    max_running: int = typer.Option(
        None,
        "--max-running-tasks-per-tenant",
        min=1,
        max=1_000_000,
        help="Most tasks of one tenant running at once; its other jobs wait (default 4096; 512 local).",
    ),
    gateway_port: int = typer.Option(
        None,
        "--gateway-port",
        min=0,
        max=65535,
        envvar="WANKA_GATEWAY_PORT",
        help="Port of the services' gateway, /services/{tenant}/{name}/ (default: --port + 1; 0: none). "
        "Its own port: a tenant's pages never share the console's origin.",
    ),
    max_waiting: int = typer.Option(
        10_000,
        "--max-waiting-jobs-per-tenant",
        min=1,
        max=10_000_000,
        help="Most jobs one tenant may have waiting; past it a submission is refused (429).",
    ),
) -> None:
    """Start the control plane: migrate the database, create the first admin, run the control loop
    and serve the REST API."""
    import os

    import uvicorn
    from sqlalchemy.engine import make_url

    from wanka.core import LAS_ORDERS, POLICIES, get_policy
    from wanka.core.config import parse_las_thresholds
    from wanka.server.limits import Limits
    from wanka.server.main import Settings, build

    if database and "--database" in " ".join(sys.argv) and make_url(database).password:
        console.print(
            "[bold yellow]--database carries a password[/]: every local user (and every task) can read "
            "a command line in /proc; give it in WANKA_DATABASE or ~/.pgpass instead"
        )
    local = backend == "local"
    tasks_default = LOCAL_TASKS_PER_JOB if local else Limits.max_tasks_per_job
    running_default = LOCAL_RUNNING_PER_TENANT if local else Limits.max_running_tasks_per_tenant
    first, _, last = task_uids.partition("-")
    if not (first.isdigit() and last.isdigit() and 0 < int(first) <= int(last)):
        fail(f"--task-uids: {task_uids!r} is not a range FIRST-LAST of uids above 0")

    try:
        preset = get_policy(policy)
    except ValueError as exc:
        fail(f"--policy: {exc}")
    try:
        thresholds = parse_las_thresholds(las_thresholds) if las_thresholds else None
    except ValueError as exc:
        fail(f"--las-thresholds: {exc}")
    if thresholds is not None and preset.job_order not in LAS_ORDERS:
        fail(
            f"--las-thresholds: the {policy} policy does not order jobs by LAS "
            f"(these do: {', '.join(n for n, p in POLICIES.items() if p.job_order in LAS_ORDERS)})"
        )
    settings = Settings.default(
        home=home,
        database=database,
        cluster=cluster,
        host=host,
        port=port,
        backend=backend,
        virtual_cards=virtual_cards,
        virtual_nodes=virtual_nodes,
        accelerator=accelerator,
        health_check=(health_check,) if health_check else None,
        policy=policy,
        las_thresholds=thresholds,
        tick_s=tick,
        grace_s=grace,
        health_every_s=health_every,
        slurm_conf=slurm_conf,
        slurm_partition=partition,
        shared_dir=shared_dir,
        kubeconfig=kubeconfig,
        k8s_namespace=k8s_namespace,
        namespace_per_tenant=namespace_per_tenant,
        pod_template=pod_template,
        topology_labels=tuple(t.strip() for t in topology_labels.split(",") if t.strip())
        if topology_labels
        else None,
        single_user=single_user,
        task_uids=(int(first), int(last)),
        processes_per_tenant=max_processes,
        limits=Limits(max_body, max_tasks or tasks_default, max_running or running_default, max_waiting),
    )
    gateway_socket = _gateway_socket(host, port, gateway_port)
    try:
        app, token_file = build(settings, gateway_socket)
    except ValueError as exc:  # a bad option or spec: say which, start nothing
        fail(str(exc))
    if backend == "local" and (single_user or os.geteuid() != 0):
        console.print(
            f"[bold yellow]tasks run as this server's own user (uid {os.geteuid()})[/]: a task can read "
            "the database, the admin token and every other job's environment, logs and checkpoints. "
            + (
                "--single-user accepts that for every tenant."
                if single_user
                else "Without root or --single-user, this server runs one tenant's jobs only."
            )
        )
    if token_file is not None:
        console.print(
            f"first start: the admin token is in {token_file} (only you can read it): `cat {token_file}`"
        )
    shown = make_url(settings.database).render_as_string(hide_password=True)
    console.print(
        f"wanka server on http://{host}:{port} (console: /, API schema: /openapi.json), database {shown}"
    )
    cluster = app.state.wanka.cluster  # what the backend found (or --cluster): the connection worked
    nodes, cards = len(cluster.node_names), int(cluster.node_cards.sum())
    console.print(
        f"{backend} backend: {nodes} node{'s' * (nodes != 1)}, {cards:,} card{'s' * (cards != 1)} "
        f"({cluster.name})"
    )
    if gateway_socket is not None:
        at = gateway_socket.getsockname()
        console.print(f"services' gateway on http://{host}:{at[1]}/services/{{tenant}}/{{name}}/")
    from wanka.server.http import BoundedHttp, raise_descriptor_limit

    descriptors = raise_descriptor_limit()
    # the control loop and the tasks' supervisors need descriptors too
    connections = max(16, min(max_connections, descriptors - 512))
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=BoundedHttp,
        limit_concurrency=connections,
        timeout_keep_alive=5,
    )


def _gateway_socket(host: str, port: int, gateway_port: int | None):
    """The gateway's listening socket, bound now (a port taken is said at once). The default port
    (the API's + 1) may be taken: the server then runs without a gateway, and says so."""
    import socket

    if gateway_port == 0:
        return None
    chosen = port + 1 if gateway_port is None else gateway_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, chosen))
    except OSError as exc:
        sock.close()
        if gateway_port is not None:
            fail(f"--gateway-port: cannot listen on {host}:{chosen}: {exc.strerror}")
        console.print(
            f"[bold yellow]no services' gateway[/]: {host}:{chosen} is taken ({exc.strerror}); "
            "give --gateway-port"
        )
        return None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


@app.command("upgrade")
def upgrade(
    database: str = DATABASE,
    revision: str = typer.Option("head", "--revision", help="Target revision."),
) -> None:
    """Run the database migrations up to REVISION."""
    from wanka.server import db
    from wanka.server.main import Settings

    settings = Settings.default(database=database)
    settings.home.mkdir(parents=True, exist_ok=True)
    from sqlalchemy.engine import make_url

    shown = make_url(settings.database).render_as_string(hide_password=True)
    with errors.status(f"migrating {shown}"):
        db.upgrade(settings.database, revision)
    console.print(f"database {shown} is at {revision}")


@app.command("admin-token")
def admin_token(
    database: str = DATABASE,
    user: str = typer.Option("admin", "--user", help="The admin to issue it for (created if missing)."),
    label: str = typer.Option("recovery token", "--label", help="A label to tell it apart."),
) -> None:
    """Issue an admin token straight into the database, for an operator with local access to it
    (every admin token revoked or expired, the token file lost). Prints the token once; the admin
    is re-enabled if it was disabled."""
    import time

    from sqlalchemy import select

    from wanka.server import auth, db, tables
    from wanka.server.main import Settings

    settings = Settings.default(database=database)
    engine = db.make_engine(settings.database)
    if db.current_revision(engine) is None:
        fail(f"{settings.database} holds no wanka database; start the server once, or give --database")
    with db.sessions(engine)() as session:
        row = session.scalar(select(tables.User).where(tables.User.name == user))
        if row is None:
            row = tables.User(name=user, role="admin", tenant_id=None, created_at=time.time())
            session.add(row)
            session.flush()
        elif row.role != "admin":
            fail(f"{user} is a member of a tenant, not an admin; choose another --user")
        row.disabled_at = None
        _, token = auth.issue(session, row, label)
        session.commit()
    engine.dispose()
    print(token)
