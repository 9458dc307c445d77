"""`wanka server` and `wanka db …`: run the control plane, manage its database."""

from __future__ import annotations

from pathlib import Path

import typer

from wanka.cli.output import console, errors

app = typer.Typer(help="The control plane's database.", no_args_is_help=True)


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8421, "--port", min=1, max=65535, help="Port to listen on."),
    database: str = typer.Option(
        None,
        "--database",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@127.0.0.1/wanka "
        "(default: SQLite under $WANKA_HOME).",
    ),
    cluster: str = typer.Option("dev", "--cluster", help="Cluster preset or spec file."),
    home: Path = typer.Option(
        None, "--home", help="State directory (default $WANKA_HOME or ~/.local/share/wanka)."
    ),
) -> None:
    """Start the control plane: migrate the database, create the first admin, serve the REST API."""
    import uvicorn

    from wanka.server.main import Settings, build

    settings = Settings.default(home=home, database=database, cluster=cluster, host=host, port=port)
    app, token_file = build(settings)
    if token_file is not None:
        console.print(
            f"first start: the admin token is in {token_file} (only you can read it): `cat {token_file}`"
        )
    console.print(f"wanka server on http://{host}:{port} (API docs: /docs), database {settings.database}")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@app.command("upgrade")
def upgrade(
    database: str = typer.Option(
        None, "--database", help="SQLAlchemy URL (default: SQLite under $WANKA_HOME)."
    ),
    revision: str = typer.Option("head", "--revision", help="Target revision."),
) -> None:
    """Run the database migrations up to REVISION."""
    from wanka.server import db
    from wanka.server.main import Settings

    settings = Settings.default(database=database)
    settings.home.mkdir(parents=True, exist_ok=True)
    with errors.status(f"migrating {settings.database}"):
        db.upgrade(settings.database, revision)
    console.print(f"database {settings.database} is at {revision}")
