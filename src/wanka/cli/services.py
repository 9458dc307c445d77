"""``wanka service``: services (long-running replicas behind the gateway; docs/services.md)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from wanka.cli.output import emit_json, fail
from wanka.cli.remote import JSON, _document, _group, _run, _table, _when, say


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:g} s"


def _notebook(name: str) -> dict:
    """The notebook named so; exit 1 when it is a service of another kind."""
    s = _run(lambda c: c.service(name))
    if s["spec"].get("kind") != "notebook":
        fail(f"{name} is a service, not a notebook (wanka service show|delete {name})", 1)
    return s


service_app = _group("Services behind the gateway: apply, list, show, link, delete.")
TENANT = typer.Option(None, "--tenant", help="Admins: the tenant whose service it is.")


@service_app.command("apply")
def apply(
    path: Path = typer.Argument(..., help="A service spec YAML (docs/services.md)."), json_out: bool = JSON
) -> None:
    """Create a service or change it (a rolling update); replicas start in this directory."""
    from wanka.models.errors import SpecError
    from wanka.models.service import parse_service_spec

    doc = _document(path)
    doc.setdefault("workdir", str(Path.cwd()))
    try:
        parse_service_spec(doc, str(path))  # the problems named here, before any request
    except SpecError as exc:
        fail(str(exc))
    svc = _run(lambda c: c.apply_service(doc))
    if json_out:
        emit_json(svc)
        return
    what = f"generation {svc['generation']}, {svc['desired']} replica(s)"
    say(f"service {svc['name']} of {svc['tenant']}: {what}")
    say(f"  {svc['url']}")


@service_app.command("list")
def list_(tenant: str = TENANT, json_out: bool = JSON) -> None:
    """Your tenant's services (admins: everyone's)."""
    rows = _run(lambda c: c.services(tenant))
    if json_out:
        emit_json(rows)
        return
    if not rows:
        say("no services")
        return
    _table(
        "services",
        ["name", "tenant", "ready/live", "wanted", "generation", "url"],
        [
            [
                s["name"] + (" (deleting)" if s["deleting"] else ""),
                s["tenant"],
                f"{s['ready']}/{len(s['replicas'])}",
                s["desired"],
                s["generation"],
                s["url"],
            ]
            for s in rows
        ],
    )


@service_app.command("show")
def show(
    name: str = typer.Argument(...),
    tenant: str = TENANT,
    wait: bool = typer.Option(
        False, "--wait", help="First wait (5 minutes at most) until as many replicas are ready as it wants."
    ),
    url: bool = typer.Option(False, "--url", help="Print only its URL at the gateway."),
    json_out: bool = JSON,
) -> None:
    """One service: its replicas, the autoscaler's last decision and the latest events."""
    s = _run(lambda c: c.service(name, tenant))
    deadline = time.monotonic() + 300
    while wait and not (s["ready"] >= max(s["desired"], 1) and not s["deleting"]):
        if time.monotonic() > deadline:
            fail(f"service {name}: {s['ready']} of {s['desired']} replicas ready after 5 minutes", 1)
        time.sleep(0.25)
        s = _run(lambda c: c.service(name, tenant))
    if url:
        say(s["url"])
        return
    if json_out:
        emit_json(s)
        return
    state = "being deleted" if s["deleting"] else f"{s['ready']} ready of {s['desired']} wanted"
    say(f"service {s['name']} of {s['tenant']}: generation {s['generation']}, {state}")
    say(f"  url: {s['url']}")
    say(f"  autoscaler: {s['reason']}")
    _table(
        "replicas",
        ["job", "state", "generation", "ready", "preemptible"],
        [
            [
                r["job"],
                r["state"],
                r["generation"],
                "yes" if r["ready"] else "no",
                "yes" if r["preemptible"] else "no",
            ]
            for r in s["replicas"]
        ],
    )
    _table("events", ["time", "event"], [[_when(e["time"]), e["message"]] for e in s["events"]])


@service_app.command("link")
def link(name: str = typer.Argument(...), tenant: str = TENANT) -> None:
    """Print a link that opens the service in a browser (once, within 2 minutes)."""
    say(_run(lambda c: c.service_link(name, tenant))["url"])


@service_app.command("delete")
def delete(name: str = typer.Argument(...), tenant: str = TENANT) -> None:
    """Stop a service's replicas; it is gone once they have stopped."""
    s = _run(lambda c: c.delete_service(name, tenant))
    say(f"service {s['name']} of {s['tenant']}: deleting ({len(s['replicas'])} replica(s) stopping)")


notebook_app = _group("Notebooks: start, open, list, stop (Jupyter).")


@notebook_app.command("start")
def notebook_start(
    name: str = typer.Option("notebook", "--name", help="Its name (a DNS label)."),
    cards: int = typer.Option(0, "--cards", min=0, max=64, help="Cards it holds."),
    cpus: int = typer.Option(0, "--cpus", min=0, max=65536, help="CPUs it holds."),
    memory_gib: int = typer.Option(0, "--mem", min=0, help="GiB of memory it holds."),
    queue: str = typer.Option("default", "--queue", "-q", help="Queue ('default': your tenant's)."),
    idle_timeout: float = typer.Option(
        3600, "--idle-timeout", min=10, help="Culled after this many idle seconds."
    ),
    max_lifetime: float = typer.Option(
        86400, "--max-lifetime", min=10, help="Culled this many seconds after start."
    ),
) -> None:
    """Start Jupyter in this directory, behind the gateway (its link: wanka notebook open)."""

    from wanka.client import WankaError

    def exists(c) -> dict | None:
        try:
            return c.service(name)
        except WankaError as exc:
            if exc.status == 404:
                return None
            raise

    if (found := _run(exists)) is not None:
        what = "notebook" if found["spec"].get("kind") == "notebook" else "service"
        fail(f"a {what} named {name} exists already: `wanka notebook open {name}`, or stop it first", 1)
    spec = {
        "name": name,
        "kind": "notebook",
        "queue": queue,
        "workdir": str(Path.cwd()),
        "cards": cards,
        "cpus": cpus,
        "memory_gib": memory_gib,
        "readiness": {"interval_s": 1, "timeout_s": 2},
        "idle_timeout_s": idle_timeout,
        "max_lifetime_s": max_lifetime,
    }
    svc = _run(lambda c: c.apply_service(spec))
    say(f"notebook {svc['name']} of {svc['tenant']}: starting; its link: `wanka notebook open {svc['name']}`")


@notebook_app.command("open")
def notebook_open(
    name: str = typer.Argument("notebook"),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="First wait (up to 5 minutes) until it is ready."
    ),
) -> None:
    """Print a link that opens the notebook in a browser (once, within 2 minutes)."""
    deadline = time.monotonic() + 300
    s = _notebook(name)
    while wait and s["ready"] < 1:
        if s["deleting"] or time.monotonic() > deadline:
            fail(f"notebook {name} is not ready: {s['reason']}", 1)
        time.sleep(0.25)
        s = _run(lambda c: c.service(name))
    say(_run(lambda c: c.service_link(name))["url"])


@notebook_app.command("list")
def notebook_list(json_out: bool = JSON) -> None:
    """Your tenant's notebooks."""
    rows = [s for s in _run(lambda c: c.services()) if s["spec"].get("kind") == "notebook"]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        say("no notebooks")
        return
    _table(
        "notebooks",
        ["name", "ready", "cards", "idle timeout", "max lifetime"],
        [
            [
                s["name"] + (" (stopping)" if s["deleting"] else ""),
                _yes(s["ready"] > 0),
                s["spec"]["cards"],
                _seconds(s["spec"].get("idle_timeout_s")),
                _seconds(s["spec"].get("max_lifetime_s")),
            ]
            for s in rows
        ],
    )


@notebook_app.command("stop")
def notebook_stop(name: str = typer.Argument("notebook")) -> None:
    """Stop a notebook (its files stay where it ran)."""
    _notebook(name)
    s = _run(lambda c: c.delete_service(name))
    say(f"notebook {s['name']}: stopping")
