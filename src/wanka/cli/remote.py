"""Commands that talk to a running `wanka server`, only through the SDK (``wanka.client``)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from wanka.cli.output import card_count, console, count, emit_json, errors, fail, printable
from wanka.client import Client, WankaError, save_login  # imported with the command (see cli/main.py)

JSON = typer.Option(False, "--json", help="Machine-readable output.")


class State(StrEnum):
    """A job's states (core.jobs.JobState), as --state takes them."""

    pending = "pending"
    held = "held"
    admitted = "admitted"
    running = "running"
    preempted = "preempted"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


def _group(help_: str, **kwargs) -> typer.Typer:
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(help=help_, add_completion=False, **kwargs)


tenants_app = _group("Tenants (organisations): admins.")
tokens_app = _group("API tokens: create, list, revoke.")
users_app = _group("Users: disable and enable (admins).")
quotas_app = _group("The quota tree: show, apply (admins).")
prices_app = _group("The price table: show, apply (admins).")
nodes_app = _group(
    "Nodes (`wanka nodes` lists them); drain and undrain (admins).",
    invoke_without_command=True,
    no_args_is_help=False,
)
queues_app = _group(
    "The queues you may use; hold and release (admins).", invoke_without_command=True, no_args_is_help=False
)


def _client():
    return Client.from_config()


def _run(call: Callable):
    """Call the server; its refusals become one clear error line, exit code 1."""
    try:
        with _client() as c:
            return call(c)
    except WankaError as exc:
        hint = "; log in with `wanka login --url URL` or set WANKA_TOKEN" if exc.status == 401 else ""
        fail(f"{exc}{hint}", 1)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "—"


def say(*objects, **kwargs) -> None:
    """Print what the server sent as it is: user strings (job names, commands, reasons) are never
    read as rich markup, nor obeyed by the terminal (control characters are shown escaped)."""
    objects = tuple(printable(o, keep="\n") if isinstance(o, str) else o for o in objects)
    console.print(*objects, markup=False, highlight=False, **kwargs)


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    if rows:  # a column empty in every row says nothing and takes room from the others
        keep = [i for i in range(len(columns)) if any(str(row[i]) not in ("", "None") for row in rows)]
        columns, rows = [columns[i] for i in keep], [[row[i] for i in keep] for row in rows]
    table = Table(title=title)
    for i, col in enumerate(columns):
        # wrapped, never cut; a column of short words (ids, states, counts) is never broken inside
        # one: a narrow terminal wraps the long columns (names, reasons) instead
        short = all(len(str(row[i])) <= 16 and " " not in str(row[i]) for row in rows)
        table.add_column(col, overflow="fold", no_wrap=short)
    for row in rows:
        # data, never markup (a job named "[/]" is text) nor terminal commands (ESC, newlines)
        table.add_row(*(Text(printable(str(v))) for v in row))
    say(table)


def _document(path: Path) -> dict:
    """A YAML document from a file, or one clear error naming the file and the problem."""
    from wanka.models.errors import SpecError, load_yaml

    try:
        return load_yaml(path)
    except SpecError as exc:
        fail(str(exc))


def login(
    url: str = typer.Option("http://127.0.0.1:8421", "--url", envvar="WANKA_URL", help="The server."),
    token: str = typer.Option(None, "--token", help="Your API token (prompted for when no file is given)."),
    token_file: Path = typer.Option(
        None, "--token-file", help="Read the token from this file (e.g. the admin token a first start wrote)."
    ),
    wait: float = typer.Option(
        30.0, "--wait", min=0, max=600, help="Seconds to wait for a server that is still starting."
    ),
) -> None:
    """Check the token against the server and store both for later commands (owner-only file).
    A server that does not answer yet is waited for (it may have just been started with `&`)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with Client(url) as c:
                c.health()
            break
        except WankaError as exc:
            if exc.status != 0 or time.monotonic() >= deadline:
                fail(f"login failed: {exc}", 1)
            time.sleep(0.2)
    if token_file is not None:  # read now: a server just started writes it before it answers
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            fail(f"--token-file: {token_file}: {exc.strerror}")
    if not token:
        token = typer.prompt("Token", hide_input=True)
    try:
        with Client(url, token) as c:
            who = c.whoami()
    except WankaError as exc:
        fail(f"login failed: {exc}", 1)
    path = save_login(url, token)
    say(f"logged in to {url} as {who['name']} ({who['role']}); stored in {path}")


def whoami(json_out: bool = JSON) -> None:
    """Who the stored token acts as: user, role and tenant, and the server it talks to."""

    def call(c: Client):
        return c.url, c.whoami()

    url, who = _run(call)
    if json_out:
        emit_json({**who, "url": url})
        return
    tenant = f", tenant {who['tenant']}" if who.get("tenant") else ""
    say(f"{who['name']} ({who['role']}{tenant}) at {url}")


def submit(
    args: list[str] = typer.Argument(
        None, help="A job spec file, and/or the command after -- (its argv: never a shell)."
    ),
    cards: int = typer.Option(
        None, "--cards", min=0, max=64, help="Cards per task (sbatch --gpus-per-task)."
    ),
    tasks: int = typer.Option(None, "--tasks", "-n", min=1, help="Tasks of the gang (sbatch --ntasks)."),
    nodes: int = typer.Option(
        None, "--nodes", "-N", min=1, help="Nodes: that many tasks, one per node (sbatch --nodes)."
    ),
    tasks_per_node: int = typer.Option(
        None, "--tasks-per-node", min=1, help="With --nodes: tasks on each node (sbatch --ntasks-per-node)."
    ),
    cpus: int = typer.Option(None, "--cpus", min=0, help="CPUs per task (sbatch --cpus-per-task)."),
    mem: str = typer.Option(
        None,
        "--mem",
        help="Memory per task: 64G, 1.5G, 512M (bare number: MB, as sbatch); whole GiB, rounded up.",
    ),
    model: list[str] = typer.Option([], "--model", help="Accepted accelerator model or vendor (repeatable)."),
    env: list[str] = typer.Option([], "--env", "-e", help="NAME=value for every task (repeatable)."),
    name: str = typer.Option(None, "--name", "-J", help="Job name."),
    queue: str = typer.Option(None, "--queue", "-q", help="Queue (default: your tenant's)."),
    tenant: str = typer.Option(None, "--tenant", help="Admins: the tenant the job is for."),
    kind: str = typer.Option(None, "--kind", help="training, batch, inference or interactive."),
    priority: str = typer.Option(
        None, "--priority", help="Priority class: best-effort, low, normal, high, critical."
    ),
    time_: str = typer.Option(
        None, "--time", "-t", help="Time limit: minutes, HH:MM:SS, D-HH:MM… (as sbatch) or 90s, 2h, 1d."
    ),
    time_limit: float = typer.Option(None, "--time-limit", min=1, help="Time limit in seconds."),
    restart: int = typer.Option(None, "--restart", min=0, max=1000, help="Restarts after a failure."),
    array: str = typer.Option(
        None, "--array", "-a", help="One job per index: 0-999:2%50 (range, step, most at once), as sbatch."
    ),
    dependency: str = typer.Option(
        None,
        "--dependency",
        "-d",
        help="afterok:ID[:ID…], afterany, afternotok, after, singleton; ',' joins.",
    ),
    hold: bool = typer.Option(False, "--hold", "-H", help="Submit it held: it waits until released."),
    parsable: bool = typer.Option(False, "--parsable", help="Print only the job id (sbatch --parsable)."),
    idempotency_key: str = typer.Option(
        None,
        "--idempotency-key",
        help="Submitting again with the same key returns the first job, never a second one.",
    ),
    json_out: bool = JSON,
) -> None:
    """Submit a job: `wanka submit job.yaml`, or `wanka submit --cards 8 -- python train.py`, or
    both (the flags win over the file, as sbatch's options over #SBATCH lines). Tasks start in the
    directory you submit from unless the spec names a workdir."""
    from wanka.cli import jobflags
    from wanka.models.errors import SpecError, load_yaml

    args = list(args or [])
    spec: dict = {}
    # a spec file: named *.yaml, or one file that is no program (`wanka submit -- /bin/sh` runs sh)
    lone_file = len(args) == 1 and Path(args[0]).is_file() and not os.access(args[0], os.X_OK)
    if args and (args[0].endswith((".yaml", ".yml")) or (lone_file and "--" not in sys.argv[1:])):
        try:
            spec = load_yaml(args.pop(0))
        except SpecError as exc:
            fail(str(exc))
    flags: dict = {}
    for option, parse, value, key in (
        ("--time", jobflags.parse_time, time_, "time_limit_s"),
        ("--mem", jobflags.parse_memory_gib, mem, "memory_gib"),
        ("--env", jobflags.parse_env, env or None, "env"),
    ):
        if value is not None:
            try:
                flags[key] = parse(value)
            except ValueError as exc:
                fail(f"{option}: {exc}")
    if time_limit is not None:
        flags["time_limit_s"] = time_limit
    given = {
        "name": name,
        "queue": queue,
        "tenant": tenant,
        "kind": kind,
        "priority_class": priority,
        "restart": restart,
        "cards": cards,
        "tasks": tasks,
        "nodes": nodes,
        "tasks_per_node": tasks_per_node,
        "cpus": cpus,
        "models": list(model) or None,
        "array": array,
        "dependency": dependency,
        "command": args or None,
    }
    flags.update({k: v for k, v in given.items() if v is not None})
    if tasks_per_node is not None and nodes is None:
        fail("--tasks-per-node: give --nodes with it")
    if not spec and "command" not in flags:
        fail(
            "give a job spec file, or the command after --, e.g. `wanka submit --cards 1 -- python train.py`"
        )
    spec = jobflags.apply_flags(spec, flags)
    spec.setdefault("workdir", str(Path.cwd()))  # like sbatch: tasks start where you submitted from
    job = _run(lambda c: c.submit(spec, idempotency_key, hold=hold))
    if parsable:
        say(str(job["id"]))
    elif json_out:
        emit_json(job)
    elif job.get("array_elements"):
        count = job["array_elements"]
        say(f"job array {job['id']} submitted to {job['queue']}: {count} jobs of {card_count(job['cards'])}")
    else:
        say(f"job {job['id']} submitted to {job['queue']} ({card_count(job['cards'])}): {job['state']}")


def run(
    args: list[str] = typer.Argument(None, help="The command after -- (default: bash)."),
    cards: int = typer.Option(1, "--cards", min=0, max=64, help="Cards (srun --gpus)."),
    model: list[str] = typer.Option([], "--model", help="Accepted accelerator model or vendor (repeatable)."),
    cpus: int = typer.Option(None, "--cpus", min=0, help="CPUs (srun --cpus-per-task)."),
    mem: str = typer.Option(None, "--mem", help="Memory: 64G, 512M (bare number: MB)."),
    time_: str = typer.Option("1h", "--time", "-t", help="Time limit (as submit's --time)."),
    queue: str = typer.Option(None, "--queue", "-q", help="Queue (default: your tenant's)."),
    name: str = typer.Option("interactive", "--name", "-J", help="Job name."),
) -> None:
    """A terminal in a new interactive job (srun --pty bash): it waits for cards (Ctrl-C then
    cancels it), then you are in its first task, as your tenant's account. Keys, Ctrl-C included,
    go to the task; exiting the shell ends the job, and this command exits with its code."""
    from wanka.cli import jobflags

    flags: dict = {"kind": "interactive", "name": name, "cards": cards, "command": list(args or ["bash"])}
    try:
        flags["time_limit_s"] = jobflags.parse_time(time_)
        if mem is not None:
            flags["memory_gib"] = jobflags.parse_memory_gib(mem)
    except ValueError as exc:
        fail(f"--time/--mem: {exc}")
    if model:
        flags["models"] = list(model)
    if cpus is not None:
        flags["cpus"] = cpus
    if queue:
        flags["queue"] = queue
    spec = jobflags.apply_flags({}, flags)
    spec["workdir"] = str(Path.cwd())
    job = _run(lambda c: c.submit(spec))
    _attach(job["id"], announce=True)


def attach(job_id: str = typer.Argument(..., help="An interactive job that runs.")) -> None:
    """A terminal in a running interactive job's first task (again, after a lost connection): the
    last 16 KiB of its output first. One attachment per job: the newest wins. Keys, Ctrl-C
    included, go to the task; this command exits with the task's code when it ends."""
    _attach(_run(lambda c: _resolve(c, job_id, arrays=False)[0]), announce=False)


def _attach(job_id: int, announce: bool) -> None:
    """Wait for the job to run, then relay this terminal to its task's until either side ends, and
    exit as srun does: with the task's exit code. ``announce`` (``wanka run``): the job is this
    command's own, so an interrupt while it waits cancels it (as salloc gives its allocation up)."""
    import sys

    from wanka.cli.terminal import relay

    # Ctrl-C while it waits sets a flag the loop reads: a KeyboardInterrupt raised at a random
    # point (inside a finaliser, say) can be swallowed, and the job would start with nobody there
    interrupted: list[int] = []

    def running(c):
        shown = None
        while not interrupted:
            job = c.job(job_id)
            if job["state"] == "running":
                return c.url, c.token, job
            if job["state"] in ENDED:
                if announce:  # this command's own job, ended before its terminal was reached
                    return c.url, c.token, job
                fail(f"job {job_id} is {job['state']}: {job['reason']}", 1)
            where = f"position {job['queue_position']}" if job.get("queue_position") else job["state"]
            if announce and where != shown:
                print(f"job {job_id}: waiting ({where}) …", file=sys.stderr, flush=True)
                shown = where
            time.sleep(0.2)
        return None

    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        found = _run(running)
    finally:
        signal.signal(signal.SIGINT, previous)
    if found is None:
        if announce:
            _run(lambda c: c.cancel(job_id))
            fail(f"job {job_id} cancelled: interrupted while it waited", 130)
        fail(f"job {job_id} still waits: `wanka attach {job_id}` to wait again", 130)
    url, token, job = found
    ran = job["state"] == "running"
    _exit_as_the_task(job_id, relay(url, token, job_id) if ran else "it ended before the terminal reached it")


ENDED = ("succeeded", "failed", "cancelled")


def _exit_as_the_task(job_id: int, why: str) -> None:
    """After the terminal closed (``why``: "" when it closed as a terminal does, else the server's
    reason): the job's end, up to 10 s for the server to record it. A job that ended before this
    terminal reached it shows its output here. Exit code: the task's (succeeded 0, failed its
    code or 1 when it was killed, cancelled 1); 1 when the job still runs (the connection ended,
    not the task)."""
    import sys

    # the task ended (its terminal closed, or was no longer open): the server records that within
    # a tick or two; any other reason (replaced, token revoked) leaves the job running
    ending = not why or "not open" in why or "before the terminal" in why

    def ended(c):
        deadline = time.monotonic() + (10 if ending else 0)
        while True:
            job = c.job(job_id)
            if job["state"] in ENDED or time.monotonic() > deadline:
                return job, c.logs(job_id)["data"] if why and job["state"] in ENDED else None
            time.sleep(0.2)

    job, missed = _run(ended)
    if missed:  # it ended before the terminal reached it: its output is in its log
        sys.stdout.write(missed[-16384:])
        sys.stdout.flush()
    if job["state"] == "succeeded":
        raise typer.Exit(0)
    if job["state"] == "failed":
        rows = _run(lambda c: c.acct(job=job_id, limit=1))["jobs"]
        code = rows[0].get("exit_code") if rows else None
        if code is None:
            fail(f"job {job_id} failed: {job['reason']}", 1)
        raise typer.Exit(code)
    if job["state"] == "cancelled":
        fail(f"job {job_id} cancelled: {job['reason']}", 1)
    fail(f"{why or 'the connection ended'}; job {job_id} still runs: `wanka attach {job_id}` to return", 1)


def jobs(
    state: State = typer.Option(
        None, "--state", "-t", case_sensitive=False, help="Only jobs in this state (squeue -t)."
    ),
    queue: str = typer.Option(None, "--queue", help="Only jobs of this queue."),
    array: int = typer.Option(None, "--array", help="Only the elements of this job array."),
    tenant: str = typer.Option(None, "--tenant", help="Admins: only this tenant's jobs."),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="Jobs per page."),
    before: int = typer.Option(None, "--before", help="Page on: jobs older than this id."),
    json_out: bool = JSON,
) -> None:
    """Your jobs, newest first (admins: everyone's), like `squeue` and `sacct` in one list."""
    page = _run(lambda c: c.jobs(state and state.value, queue, tenant, limit, before, array))
    if json_out:
        emit_json(page)
        return
    now = time.time()
    rows = [
        [
            j["id"]
            if j.get("array_job_id") is None
            else f"{j['id']} ({j['array_job_id']}_{j['array_index']})",
            j["tenant"],
            j.get("user", ""),
            j["queue"],
            j["name"],
            j["state"],
            j["cards"],
            _elapsed(j, now),
            _nodes(j.get("nodes") or []),
            _when(j["submit_time"]),
            j["reason"] if j["state"] != "running" else "",
        ]
        for j in page["jobs"]
    ]
    columns = [
        "id",
        "tenant",
        "user",
        "queue",
        "name",
        "state",
        "cards",
        "elapsed",
        "nodes",
        "submitted",
        "reason",
    ]
    if console.width < WIDE:  # a narrow terminal: the columns that tell jobs apart, unwrapped
        keep = [columns.index(c) for c in ("id", "name", "state", "cards", "elapsed", "reason")]
        columns, rows = [columns[i] for i in keep], [[r[i] for i in keep] for r in rows]
    _table("jobs", columns, rows)
    if page["next_before_id"]:
        say(f"more: --before {page['next_before_id']}")


def _elapsed(job: dict, now: float) -> str:
    """Run time so far (or in all, once ended), as Slurm prints it: [D-]HH:MM:SS."""
    if job.get("start_time") is None:
        return "—"
    seconds = int(max(0.0, (job.get("end_time") or now) - job["start_time"]))
    days, rest = divmod(seconds, 86400)
    text = time.strftime("%H:%M:%S", time.gmtime(rest))
    return f"{days}-{text}" if days else text


def _nodes(names: list[str]) -> str:
    return ",".join(names) if len(names) <= 3 else f"{','.join(names[:2])},… ({len(names)})"


JOB_ID = typer.Argument(..., help="Job id (ID_INDEX: an element of job array ID).")


def show(job_id: str = JOB_ID, json_out: bool = JSON) -> None:
    """One job with its events."""

    def both(c):
        i = _resolve(c, job_id, arrays=False)[0]
        return c.job(i), c.events(i)

    job, events = _run(both)
    if json_out:
        emit_json({**job, "events": events})
        return
    say(
        f"job {job['id']} {job['name']!r} — {job['state']}, {card_count(job['cards'])}, "
        f"tenant {job['tenant']}, queue {job['queue']}"
    )
    say(f"command: {job['spec'].get('command')}")
    if job.get("queue_position"):
        when = f", starts by {_when(job['estimated_start'])}" if job.get("estimated_start") else ""
        say(f"waiting: position {job['queue_position']} in the scheduling order{when}")
    _table(
        "events", ["time", "state", "reason"], [[_when(e["time"]), e["state"], e["reason"]] for e in events]
    )


JOB_IDS = typer.Argument(..., help="Job ids; an array's id means all its elements, ID_INDEX one of them.")


def cancel(job_ids: list[str] = JOB_IDS, json_out: bool = JSON) -> None:
    """Cancel jobs: a waiting one at once, a running one when its tasks have stopped (scancel)."""
    _each(job_ids, lambda c, i, whole: c.cancel(i, whole), json_out, "cancelled")


def hold(job_ids: list[str] = JOB_IDS, json_out: bool = JSON) -> None:
    """Keep waiting jobs from starting until released (scontrol hold)."""
    _each(job_ids, lambda c, i, whole: c.hold(i, whole), json_out, "held")


def release(job_ids: list[str] = JOB_IDS, json_out: bool = JSON) -> None:
    """Held jobs wait again, in their old places (scontrol release)."""
    _each(job_ids, lambda c, i, whole: c.release(i, whole), json_out, "released")


def requeue(
    job_ids: list[str] = JOB_IDS,
    queue: str = typer.Option(
        None, "--queue", "-q", help="Wait in this queue instead (the old one may be gone)."
    ),
    json_out: bool = JSON,
) -> None:
    """Finished jobs wait again: same id, spec and checkpoints, a new run (scontrol requeue)."""
    _each(job_ids, lambda c, i, whole: c.requeue(i, whole, queue), json_out, "requeued")


def update(
    job_id: str = JOB_ID,
    priority: str = typer.Option(None, "--priority", help="New priority class."),
    time_: str = typer.Option(None, "--time", "-t", help="New time limit (as submit's --time)."),
    json_out: bool = JSON,
) -> None:
    """Change a waiting job's priority class or time limit (scontrol update)."""
    from wanka.cli.jobflags import parse_time

    limit = None
    if time_ is not None:
        try:
            limit = parse_time(time_)
        except ValueError as exc:
            fail(f"--time: {exc}")
    if priority is None and limit is None:
        fail("give --priority or --time")
    job = _run(lambda c: c.update(_resolve(c, job_id, arrays=False)[0], priority, limit))
    if json_out:
        emit_json(job)
    else:
        limit_s = job["spec"].get("time_limit_s")
        limit_text = f"{limit_s:g} s" if limit_s else "none"
        say(f"job {job['id']}: {job['state']}, {job['spec']['priority_class']}, time limit {limit_text}")


def _resolve(c, text: str, arrays: bool) -> tuple[int, bool]:
    """(job id, whole array) for ``ID`` or ``ARRAY_INDEX`` as Slurm writes them: an array's own
    id means the whole array."""
    head, sep, index = text.partition("_")
    if not _digits(head) or (sep and not _digits(index)):
        raise WankaError(0, f"{text!r} is not a job id (ID, or ID_INDEX for an array element)")
    if sep:
        page = c.jobs(array=int(head), limit=1000)
        while True:
            found = [j["id"] for j in page["jobs"] if j.get("array_index") == int(index)]
            if found or not page["next_before_id"]:
                break
            page = c.jobs(array=int(head), limit=1000, before_id=page["next_before_id"])
        if not found:
            raise WankaError(404, f"no element {index} in job array {head}")
        return found[0], False
    if not arrays:
        return int(head), False
    job = c.job(int(head))
    return int(head), job.get("array_job_id") == int(head)


def _digits(text: str) -> bool:
    """0-9 only (str.isdigit also takes "²", which int() refuses)."""
    return text.isascii() and text.isdigit() and len(text) <= 19


def _each(job_ids: list[str], call: Callable, json_out: bool, verb: str, arrays: bool = True) -> None:
    """``call(client, id, whole_array)`` for every job; one line per job (or array), the refusals
    on stderr (exit 1 if any)."""
    done, failed = [], False
    with _client() as c:
        for job_id in job_ids:
            try:
                target, whole = _resolve(c, job_id, arrays)
                job = call(c, target, whole)
            except WankaError as exc:
                failed = True
                errors.print(f"error: job {job_id}: {exc}", markup=False, highlight=False, soft_wrap=True)
                continue
            done.append(job)
            if json_out:
                continue
            if whole:
                say(f"job array {job['id']}: every element that could be is {verb}")
            elif verb == "cancelled" and job["state"] != "cancelled":  # it runs: its tasks are told to stop
                say(f"job {job['id']}: cancelling ({job['state']}; its tasks are being stopped)")
            else:
                say(f"job {job['id']}: {job['state']}")
    if json_out:
        emit_json(done)
    if failed:
        raise SystemExit(1)


def logs(
    job_id: str = JOB_ID,
    task: int = typer.Option(0, "--task", min=0, help="Task index (RANK)."),
    run: int = typer.Option(None, "--run", min=1, help="Which run (default: the latest)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
) -> None:
    """A task's stdout and stderr."""
    import sys

    def show_(c):
        job = _resolve(c, job_id, arrays=False)[0]
        if follow:
            for data in c.follow(job, task, run):
                sys.stdout.write(data)
                sys.stdout.flush()
            return
        offset = 0
        while True:
            chunk = c.logs(job, task, offset, run)
            sys.stdout.write(chunk["data"])
            if not chunk["data"]:
                return
            offset = chunk["next_offset"]

    _run(show_)


def usage(
    month: str = typer.Option(None, "--month", help="YYYY-MM (UTC); default this month."),
    first_day: str = typer.Option(None, "--from", help="YYYY-MM-DD (UTC): from this day on."),
    last_day: str = typer.Option(None, "--to", help="YYYY-MM-DD (UTC): to this day, included."),
    tenant: str = typer.Option(None, "--tenant", help="Admins: only this tenant."),
    json_out: bool = JSON,
) -> None:
    """Card-hours, PFLOP-hours and the bill, per tenant; per queue, model and day with --json."""
    out = _run(lambda c: c.usage(month, tenant, first_day, last_day))
    if json_out:
        emit_json(out)
        return
    cur = out["currency"] or ""
    rows = [
        [b["tenant"], f"{b['card_hours']:.4f}", f"{b['pflop_hours']:.4f}", f"{b['cost']:.2f} {cur}".strip()]
        for b in out["bills"]
    ]
    _table(f"usage {out['month']}", ["tenant", "card-hours", "PFLOP-hours", "bill"], rows)
    if not out["currency"]:
        say("no price table yet: `wanka prices apply FILE` (admins)")
    unpriced = sum(b["unpriced_card_hours"] for b in out["bills"])
    if out["currency"] and unpriced:
        say(f"{unpriced:.4f} card-hours ran while no price was in force for their model")


ACCT_COLUMNS = {  # --format name -> (heading, value of a job row or a task row)
    "jobid": "JobID",
    "jobname": "JobName",
    "tenant": "Tenant",
    "user": "User",
    "queue": "Queue",
    "state": "State",
    "exitcode": "ExitCode",
    "elapsed": "Elapsed",
    "nnodes": "NNodes",
    "nodelist": "NodeList",
    "cards": "Cards",
    "cardhours": "CardHours",
    "maxrss": "MaxRSS",
    "run": "Run",
    "submit": "Submit",
    "start": "Start",
    "end": "End",
    "reason": "Reason",
}
ACCT_DEFAULT = "jobid,jobname,queue,state,exitcode,elapsed,nnodes,nodelist,cards,cardhours,maxrss"
ACCT_NARROW = "jobid,jobname,state,exitcode,elapsed,cards,maxrss"  # the default under WIDE columns
WIDE = 120  # a terminal at least this wide gets every column of `jobs` and `acct`


def acct(
    first: str = typer.Option(
        None, "--from", "-S", help="From (local time): YYYY-MM-DD[THH:MM[:SS]]; default today 00:00."
    ),
    last: str = typer.Option(None, "--to", "-E", help="To (local time), as --from; default now."),
    state: State = typer.Option(None, "--state", "-s", case_sensitive=False, help="Only jobs in this state."),
    job: str = typer.Option(None, "--job", "-j", help="One job (ID or ARRAY_INDEX), whenever it ran."),
    tenant: str = typer.Option(None, "--tenant", help="Admins: only this tenant's jobs."),
    fmt: str = typer.Option(
        None,
        "--format",
        "-o",
        help="Columns (default: " + ACCT_DEFAULT + "): " + ",".join(ACCT_COLUMNS) + ".",
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="Jobs per page."),
    duplicates: bool = typer.Option(
        False, "--duplicates", "-D", help="The tasks of every run of a requeued job, not only the last."
    ),
    json_out: bool = JSON,
) -> None:
    """Accounting, as sacct: jobs waiting or running in a window, one line per job and per task
    (JOB.RANK) with exit codes, elapsed time, nodes, cards, card-hours and peak memory. A job that
    ran more than once shows its last run's tasks (-D: every run's, as sacct -D)."""
    fmt = fmt or (ACCT_DEFAULT if console.width >= WIDE else ACCT_NARROW)
    columns = [c.strip().lower() for c in fmt.split(",") if c.strip()]
    unknown = [c for c in columns if c not in ACCT_COLUMNS]
    if unknown or not columns:
        named = ", ".join(unknown) or "(none)"
        fail(f"--format: unknown column(s) {named}; choose from {','.join(ACCT_COLUMNS)}")
    bounds = [_local_time(option, text) for option, text in (("--from", first), ("--to", last))]

    def call(c):
        job_id = _resolve(c, job, arrays=False)[0] if job else None
        return c.acct(*bounds, state and state.value, job_id, tenant, limit)

    page = _run(call)
    if json_out:
        emit_json(page)
        return
    rows = []
    now = time.time()
    for j in page["jobs"]:
        jobid = str(j["id"]) if j.get("array_job_id") is None else f"{j['array_job_id']}_{j['array_index']}"
        rss = [t["max_rss_kib"] for t in j["tasks"] if t["max_rss_kib"] is not None]
        last_run = max((t["run"] for t in j["tasks"]), default=0)
        shown = j["tasks"] if duplicates else [t for t in j["tasks"] if t["run"] == last_run]
        job_state = j["state"]
        if job_state == "failed" and shown and all(t.get("state") == "timeout" for t in shown):
            job_state = "timeout"  # as sacct's TIMEOUT: the job failed by its time limit
        values = {
            "jobid": jobid,
            "jobname": j["name"],
            "tenant": j["tenant"],
            "user": j["user"],
            "queue": j["queue"],
            "state": job_state,
            "exitcode": "" if j["exit_code"] is None else j["exit_code"],
            "elapsed": _elapsed(j, now),
            "nnodes": len(j["nodes"]),
            "nodelist": ",".join(j["nodes"]),
            "cards": j["cards"],
            "cardhours": f"{j['card_hours']:.3f}",
            "maxrss": _kib(max(rss)) if rss else "",
            "run": j["runs"],
            "submit": _when(j["submit_time"]),
            "start": _when(j["start_time"]),
            "end": _when(j["end_time"]),
            "reason": j["reason"],
        }
        rows.append([values[c] for c in columns])
        for t in shown:
            span = {"start_time": t["start"], "end_time": t["end"]}
            task_values = {
                **{c: "" for c in ACCT_COLUMNS},
                "jobid": f"{jobid}.{t['task']}",
                "jobname": t["role"],
                "exitcode": "" if t["exit_code"] is None else t["exit_code"],
                "state": t.get("state") or "",
                "elapsed": _elapsed(span, now),
                "nnodes": 1,
                "nodelist": t["node"],
                "cards": t["cards"],
                "cardhours": f"{t['cards'] * (t['end'] - t['start']) / 3600:.3f}",
                "maxrss": "" if t["max_rss_kib"] is None else _kib(t["max_rss_kib"]),
                "run": t["run"],
                "start": _when(t["start"]),
                "end": _when(t["end"]),
            }
            rows.append([task_values[c] for c in columns])
    _table("accounting", [ACCT_COLUMNS[c] for c in columns], rows)
    if page["next_before_id"]:
        say("more: --limit, or narrow --from/--to")


def _local_time(option: str, text: str | None) -> float | None:
    """UNIX seconds of a local date or date-time, as sacct reads -S and -E."""
    import datetime as dt

    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        fail(f"{option}: {text!r} is not a date or time: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]")


def _kib(kib: int) -> str:
    for unit, size in (("G", 1 << 20), ("M", 1 << 10)):
        if kib >= size:
            return f"{kib / size:.1f}{unit}"
    return f"{kib}K"


@prices_app.command("apply")
def prices_apply(path: Path = typer.Argument(..., help="A price table YAML: currency, card_hour.")) -> None:
    """Set the price per card-hour of each accelerator model (admins)."""
    doc = _document(path)
    table = _run(lambda c: c.apply_prices(doc))
    when = table.get("effective_from")
    start = "now" if when is None or when <= time.time() else f"from {_when(when)}"
    say(f"prices in force {start} ({table['currency']}): {len(table['card_hour'])} models")


@prices_app.command("show")
def prices_show(json_out: bool = JSON) -> None:
    """The price table in force."""
    table = _run(lambda c: c.prices())
    if json_out:
        emit_json(table)
    elif table is None:
        say("no price table yet")
    else:
        _table(
            f"prices ({table['currency']})", ["model", "per card-hour"], sorted(table["card_hour"].items())
        )


@queues_app.callback()
def queues(ctx: typer.Context, json_out: bool = JSON) -> None:
    """The queues you may use (admins: all), with quotas and waiting jobs; hold and release (admins)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _run(lambda c: c.queues())
    if json_out:
        emit_json(rows)
        return

    def quota(q: dict) -> str:
        parts = []
        for model, v in q["quota"].items():
            borrow = "∞" if v["borrowing_limit"] is None else v["borrowing_limit"]
            parts.append(f"{model}: {v['nominal']} (+{borrow})")
        return ", ".join(parts)

    _table(
        "queues",
        ["queue", "parent", "submit here", "weight", "quota: nominal (+borrow)", "waiting", "held"],
        [
            [
                q["name"],
                q["parent"] or "—",
                "yes" if q["leaf"] else "no",
                q["weight"],
                quota(q),
                q["pending_jobs"],
                q.get("held") or "",
            ]
            for q in rows
        ],
    )


@queues_app.command("hold")
def queues_hold(
    queue: str = typer.Argument(..., help="A leaf queue."),
    reason: str = typer.Option("", "--reason", help="Why (its waiting jobs show it)."),
) -> None:
    """Its jobs wait however much is free; running ones run on (admins)."""
    q = _run(lambda c: c.hold_queue(queue, reason))
    say(f"queue {q['name']} held: {count(q['pending_jobs'], 'job')} wait")


@queues_app.command("release")
def queues_release(queue: str = typer.Argument(..., help="A held queue.")) -> None:
    """Its jobs are scheduled again (admins)."""
    q = _run(lambda c: c.release_queue(queue))
    say(f"queue {q['name']} released")


@nodes_app.callback()
def nodes_list(ctx: typer.Context, json_out: bool = JSON) -> None:
    """List nodes (no subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _run(lambda c: c.nodes())
    if json_out:
        emit_json(rows)
        return
    _table(
        "nodes",
        ["node", "model", "cards", "cpus", "memory", "domain", "state", "reason"],
        [
            [
                n["name"],
                n["model"],
                n["cards"],
                n["cpus"],
                f"{n['memory_gib']} GiB",
                "/".join(n["domain"]),
                n["state"],
                n["reason"],
            ]
            for n in rows
        ],
    )


@nodes_app.command("drain")
def nodes_drain(
    node: str = typer.Argument(..., help="Node name."),
    reason: str = typer.Option("", "--reason", help="Why (shown in `wanka nodes`)."),
) -> None:
    """Running jobs keep running; nothing new is placed on the node."""
    n = _run(lambda c: c.drain(node, reason))
    say(f"node {n['name']}: {n['state']} ({n['reason']})")


@nodes_app.command("undrain")
def nodes_undrain(node: str = typer.Argument(..., help="Node name.")) -> None:
    """Place work on the node again."""
    n = _run(lambda c: c.undrain(node))
    say(f"node {n['name']}: {n['state']}")


@tenants_app.command("create")
def tenants_create(
    name: str = typer.Argument(..., help="Tenant name: lower-case letters, digits, -"),
) -> None:
    """A new tenant, with a queue named like it until a quota document says otherwise."""
    t = _run(lambda c: c.create_tenant(name))
    say(f"tenant {t['name']} created (id {t['id']})")


@tenants_app.command("list")
def tenants_list(json_out: bool = JSON) -> None:
    """Every tenant and whether it is enabled."""
    rows = _run(lambda c: c.tenants())
    if json_out:
        emit_json(rows)
    else:
        _table(
            "tenants",
            ["id", "name", "state"],
            [[t["id"], t["name"], "disabled" if t.get("disabled") else "enabled"] for t in rows],
        )


@tenants_app.command("disable")
def tenants_disable(name: str = typer.Argument(..., help="Tenant name.")) -> None:
    """Its members' tokens stop working and its jobs are cancelled; its history and bills stay."""
    t = _run(lambda c: c.set_tenant_enabled(name, False))
    say(f"tenant {t['name']} disabled")


@tenants_app.command("enable")
def tenants_enable(name: str = typer.Argument(..., help="Tenant name.")) -> None:
    """Its members' tokens work again; cancelled jobs stay cancelled."""
    t = _run(lambda c: c.set_tenant_enabled(name, True))
    say(f"tenant {t['name']} enabled")


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Its tokens stop working at once (the last working admin cannot be disabled)."""
    u = _run(lambda c: c.set_user_enabled(name, False))
    say(f"user {u['name']} disabled")


@users_app.command("enable")
def users_enable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Its tokens work again (those not revoked or expired)."""
    u = _run(lambda c: c.set_user_enabled(name, True))
    say(f"user {u['name']} enabled")


@tokens_app.command("create")
def tokens_create(
    user: str = typer.Argument(..., help="The user the token is for."),
    label: str = typer.Option("", "--label", help="What it is for."),
    tenant: str = typer.Option(None, "--tenant", help="Create the user first, as a member of this tenant."),
    expires_in: float = typer.Option(
        None, "--expires-in", min=1, max=10 * 366 * 86400, help="Seconds until it stops working."
    ),
    parsable: bool = typer.Option(
        False, "--parsable", help="Print only the token: TOKEN=$(wanka tokens create …)."
    ),
    json_out: bool = JSON,
) -> None:
    """A new API token (shown this once; the server keeps only its hash)."""

    def create(c):
        if tenant is not None:
            try:
                c.create_user(user, "member", tenant)
            except WankaError as exc:
                # run again (the README's line twice): a member of that tenant already is one
                if exc.status != 409 or c.user(user).get("tenant") != tenant:
                    raise
        return c.create_token(user, label, expires_in)

    t = _run(create)
    if parsable:
        say(t["token"])
    elif json_out:
        emit_json(t)
    else:
        say(f"token {t['id']} for {t['user']} (shown once, store it now):")
        say(t["token"])


@tokens_app.command("list")
def tokens_list(json_out: bool = JSON) -> None:
    """Your tokens (admins: everyone's): prefix and label, never the token."""
    rows = _run(lambda c: c.tokens())
    if json_out:
        emit_json(rows)
    else:
        _table(
            "tokens",
            ["id", "user", "prefix", "label", "created", "revoked", "expires"],
            [
                [
                    t["id"],
                    t["user"],
                    t["prefix"],
                    t["label"],
                    _when(t["created_at"]),
                    _when(t["revoked_at"]),
                    _when(t.get("expires_at")),
                ]
                for t in rows
            ],
        )


@tokens_app.command("revoke")
def tokens_revoke(token_id: int = typer.Argument(..., help="Token id (see `wanka tokens list`).")) -> None:
    """The token stops working at once."""
    t = _run(lambda c: c.revoke_token(token_id))
    say(f"token {t['id']} of {t['user']} revoked")


@quotas_app.command("show")
def quotas_show(json_out: bool = JSON) -> None:
    """The quota tree in force with what each queue holds now (members: their own organisation)."""
    rows = _run(lambda c: c.queues())
    if json_out:
        emit_json(rows)
        return
    depth: dict[str, int] = {}
    table_rows = []
    for q in rows:  # parents come before their children
        depth[q["name"]] = depth[q["parent"]] + 1 if q["parent"] in depth else 0
        for model, v in q["quota"].items() or [("—", None)]:
            held = q.get("in_use", {}).get(model, 0) if v else 0
            table_rows.append(
                [
                    "  " * depth[q["name"]] + q["name"],
                    model,
                    v["nominal"] if v else 0,
                    "∞" if not v or v["borrowing_limit"] is None else v["borrowing_limit"],
                    "all" if not v or v["lending_limit"] is None else v["lending_limit"],
                    held,
                    q["pending_jobs"] if q["leaf"] else "",
                ]
            )
    _table(
        "quotas (cards)",
        ["queue", "model", "nominal", "may borrow", "may lend", "in use", "waiting"],
        table_rows,
    )


@quotas_app.command("apply")
def quotas_apply(path: Path = typer.Argument(..., help="A queues YAML file (docs/specs.md).")) -> None:
    """Replace the quota tree; a bad file changes nothing and every problem is named."""
    doc = _document(path)
    applied = _run(lambda c: c.apply_quotas(doc))
    say(f"quota document {applied['document']} in force: {applied['queues']} queues")
