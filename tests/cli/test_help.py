"""`wanka -h`: every command and sub-command explains itself, and a command loads only what it needs."""

import json
import os
import subprocess
import sys

import pytest

from wanka.cli.main import COMMANDS, load


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wanka.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_dash_h_lists_every_command_with_its_line():
    for flag in ("-h", "--help"):
        r = run(flag)
        assert r.returncode == 0, r.stderr
        for name, entry in COMMANDS.items():
            assert name in r.stdout and entry.help.rstrip(".") in " ".join(r.stdout.split())


def _commands(cmd, path=()):
    """Every command under ``cmd`` (itself included), as (path, click command)."""
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_sub_command_has_help_and_the_listing_agrees(name):
    command = load(name)
    # the line `wanka -h` prints (without importing anything) is how the command's own help begins
    assert (command.help or "").startswith(COMMANDS[name].help.rstrip(".")), (name, command.help)
    for path, cmd in _commands(command, (name,)):
        assert (cmd.help or "").strip(), f"`wanka {' '.join(path)}` has no help text"
        for param in cmd.params:
            if param.param_type_name == "option" and not param.hidden:
                assert param.help, f"`wanka {' '.join(path)}` option {param.opts[0]} has no help"


@pytest.mark.parametrize("args", [("jobs", "-h"), ("quotas", "show", "-h"), ("cluster", "status", "-h")])
def test_dash_h_works_on_sub_commands(args):
    r = run(*args)
    assert r.returncode == 0 and "Usage: wanka " + " ".join(args[:-1]) in r.stdout, r.stdout + r.stderr


def test_a_client_command_loads_neither_the_twin_nor_the_core():
    """What keeps `wanka jobs` fast (`wanka bench cli` prints how fast): it never imports the
    scheduling core, numpy, the twin or matplotlib."""
    code = (
        "import atexit, json, sys\n"
        "heavy = ('numpy', 'matplotlib', 'wanka.core', 'wanka.sim', 'sqlalchemy', 'fastapi')\n"
        "atexit.register(lambda: print(json.dumps([m for m in heavy if m in sys.modules])))\n"
        "sys.argv = ['wanka', 'jobs']\n"
        "from wanka.cli.main import main\n"
        "main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANKA_URL": "http://127.0.0.1:9", "WANKA_TOKEN": "x"},
    )
    assert "cannot reach" in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_the_version_is_a_flag_too(flag):
    from wanka import __version__

    r = run(flag)
    assert r.returncode == 0 and r.stdout.strip() == __version__, r.stderr
    assert run("version").stdout.strip() == __version__
