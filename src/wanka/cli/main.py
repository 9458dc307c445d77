"""The `wanka` command.

A lazy group: each command's module is imported only when that command runs (or shows its own
help), so `wanka jobs` loads the SDK and a table, never the twin, plots or benchmarks. The list that
`wanka -h` prints comes from :data:`COMMANDS` without importing anything;
``tests/cli/test_help.py`` checks each line against the command's own help.
"""

from __future__ import annotations

import gc
import importlib
from typing import NamedTuple

# A CLI call is mostly imports (typer, rich, httpx: ~200 ms), which build many long-lived objects
# and no cyclic garbage; the collector's passes over them cost ~10% of `wanka jobs`' CPU time
# (A/B in docs/benchmarks.md). It is off while the CLI imports; `load` freezes what they built
# (later collections skip it) and turns it back on before any command runs. Whoever imports this
# module gets it back on once the module's own imports are done.
gc.disable()

import typer  # noqa: E402
from typer.core import TyperCommand, TyperGroup, TyperOption  # noqa: E402

JOBS = "Jobs"
ACCOUNT = "Your account and the cluster"
OPERATE = "Operators"
TWIN = "Models, the digital twin and benchmarks"


class Entry(NamedTuple):
    target: str  # "module:attribute": a typer.Typer (a group of commands) or a function (one command)
    panel: str
    help: str  # the first sentence of the command's help


COMMANDS: dict[str, Entry] = {
    "submit": Entry("wanka.cli.remote:submit", JOBS, "Submit a job."),
    "run": Entry("wanka.cli.remote:run", JOBS, "A terminal in a new interactive job (srun --pty bash)."),
    "attach": Entry("wanka.cli.remote:attach", JOBS, "A terminal in a running interactive job's first task."),
    "jobs": Entry("wanka.cli.remote:jobs", JOBS, "Your jobs, newest first."),
    "show": Entry("wanka.cli.remote:show", JOBS, "One job with its events."),
    "logs": Entry("wanka.cli.remote:logs", JOBS, "A task's stdout and stderr."),
    "cancel": Entry("wanka.cli.remote:cancel", JOBS, "Cancel jobs."),
    "hold": Entry("wanka.cli.remote:hold", JOBS, "Keep waiting jobs from starting until released."),
    "release": Entry("wanka.cli.remote:release", JOBS, "Held jobs wait again, in their old places."),
    "requeue": Entry("wanka.cli.remote:requeue", JOBS, "Finished jobs wait again."),
    "update": Entry("wanka.cli.remote:update", JOBS, "Change a waiting job's priority class or time limit."),
    "service": Entry(
        "wanka.cli.services:service_app",
        JOBS,
        "Services behind the gateway: apply, list, show, link, delete.",
    ),
    "notebook": Entry(
        "wanka.cli.services:notebook_app", JOBS, "Notebooks: start, open, list, stop (Jupyter)."
    ),
    "acct": Entry("wanka.cli.remote:acct", JOBS, "Accounting, as sacct."),
    "usage": Entry("wanka.cli.remote:usage", JOBS, "Card-hours, PFLOP-hours and the bill, per tenant."),
    "login": Entry("wanka.cli.remote:login", ACCOUNT, "Check the token against the server and store both."),
    "whoami": Entry("wanka.cli.remote:whoami", ACCOUNT, "Who the stored token acts as."),
    "queues": Entry("wanka.cli.remote:queues_app", ACCOUNT, "The queues you may use."),
    "quotas": Entry("wanka.cli.remote:quotas_app", ACCOUNT, "The quota tree: show, apply (admins)."),
    "cluster": Entry(
        "wanka.cli.cluster:app", ACCOUNT, "The running cluster's status; cluster presets and spec files."
    ),
    "nodes": Entry(
        "wanka.cli.remote:nodes_app", ACCOUNT, "Nodes (`wanka nodes` lists them); drain and undrain (admins)."
    ),
    "prices": Entry("wanka.cli.remote:prices_app", ACCOUNT, "The price table: show, apply (admins)."),
    "tokens": Entry("wanka.cli.remote:tokens_app", ACCOUNT, "API tokens: create, list, revoke."),
    "tenants": Entry("wanka.cli.remote:tenants_app", OPERATE, "Tenants (organisations): admins."),
    "users": Entry("wanka.cli.remote:users_app", OPERATE, "Users: disable and enable (admins)."),
    "server": Entry("wanka.cli.server:server", OPERATE, "Start the control plane."),
    "db": Entry("wanka.cli.server:app", OPERATE, "The control plane's database."),
    "k8s": Entry(
        "wanka.cli.k8s:app", OPERATE, "Kubernetes: install the PodGroup CRD and the server's ClusterRole."
    ),
    "demo": Entry(
        "wanka.cli.demo:demo", TWIN, "One scheduling cycle on wanka-10k, then a month of the twin."
    ),
    "simulate": Entry(
        "wanka.cli.simulate:simulate", TWIN, "Replay a month (or a trace) through the real core."
    ),
    "policies": Entry("wanka.cli.demo:policies", TWIN, "The policy presets and what each configures."),
    "catalog": Entry("wanka.cli.cluster:catalog_app", TWIN, "The accelerator catalog."),
    "bench": Entry("wanka.cli.bench:app", TWIN, "Benchmarks (`make bench` runs them all)."),
    "version": Entry("wanka.cli.demo:version", TWIN, "Print the version."),
}


def load(name: str) -> typer.main.click.Command:
    """The click command behind ``name``, its module imported now (with the collector off, as in
    :func:`main`; on again before the command runs)."""
    module, _, attribute = COMMANDS[name].target.partition(":")
    try:
        target = getattr(importlib.import_module(module), attribute)
        if not isinstance(target, typer.Typer):
            single = typer.Typer(add_completion=False)
            single.command(name)(target)
            target = single
        return typer.main.get_command(target)
    finally:
        gc.freeze()  # what the imports built lives as long as the process: no collection walks it
        gc.enable()


class LazyGroup(TyperGroup):
    """Commands resolved on use; the help listing built from :data:`COMMANDS` alone."""

    _listing = False

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        if self._listing:  # a stand-in carrying the line `wanka -h` prints
            return TyperCommand(name, help=entry.help, rich_help_panel=entry.panel)
        return load(name)

    def format_help(self, ctx, formatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = LazyGroup(
    name="wanka",
    help="wanka: the operating layer for ten-thousand-card AI clusters. `wanka COMMAND -h` for a "
    "command's options.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(ctx, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from wanka import __version__

        print(__version__)
        ctx.exit()


# `wanka --version` as well as `wanka version` (what users of any other CLI try first)
app.params.append(
    TyperOption(
        param_decls=["--version", "-V"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_print_version,
        help="Print the version and exit.",
    )
)


gc.enable()


def main() -> None:
    gc.disable()  # until the command's module is imported (`load`)
    try:
        app.main(prog_name="wanka")
    except KeyboardInterrupt:
        from wanka.cli.output import fail

        fail("interrupted", code=130)
    finally:
        gc.enable()


if __name__ == "__main__":
    main()
