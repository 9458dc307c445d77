"""``wanka service``: services (long-running replicas behind the gateway; docs/services.md)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from wanka.cli.output import emit_json, fail
from wanka.cli.remote import JSON, _document, _group, _run, _table, _when, say


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


service_app = _group("Services: apply, list, show, delete (replicas behind the gateway).")
TENANT = typer.Option(None, "--tenant", help="Admins: the tenant whose service it is.")


@service_app.command("apply")
def apply(
    path: Path = typer.Argument(..., help="A service spec YAML (docs/services.md)."), json_out: bool = JSON
) -> None:
    """Create a service, or change it (a rolling update when what its replicas run changes).

    Replicas start in the directory you apply from unless the spec names a workdir."""
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
        ["name", "tenant", "ready", "desired", "generation", "url"],
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
    wait: bool = typer.Option(False, "--wait", help="First wait (up to 5 minutes) until it is ready."),
    url: bool = typer.Option(False, "--url", help="Print only its URL at the gateway."),
    json_out: bool = JSON,
) -> None:
    """One service: its replicas, the autoscaler's last decision and the latest events. With
    --wait, once as many replicas are ready as the autoscaler wants (at least one)."""
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


@service_app.command("delete")
def delete(name: str = typer.Argument(...), tenant: str = TENANT) -> None:
    """Stop a service's replicas; it is gone once they have stopped."""
    s = _run(lambda c: c.delete_service(name, tenant))
    say(f"service {s['name']} of {s['tenant']}: deleting ({len(s['replicas'])} replica(s) stopping)")
