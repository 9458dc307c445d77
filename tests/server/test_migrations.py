"""Alembic migrations from an empty database, down and up again; `wanka db upgrade`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import inspect, text

import tests.conftest as top
from wanka.server import db
from wanka.server.tables import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    if top.PG_BASE is None:
        pytest.skip("PostgreSQL runs in .ci/run's second pass (WANKA_TEST_POSTGRES=1)")
    return top.new_database(tmp_path)


def test_upgrade_from_empty_matches_the_tables_and_downgrades_cleanly(empty_database):
    url = empty_database
    db.upgrade(url)
    engine = db.make_engine(url)
    assert db.current_revision(engine) is not None
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set(Base.metadata.tables)
    for table in Base.metadata.tables.values():  # every column the models declare exists
        have = {c["name"] for c in inspect(engine).get_columns(table.name)}
        assert have == {c.name for c in table.columns}, table.name
    db.downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set()
    db.upgrade(url)
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    engine.dispose()


def test_upgrade_from_the_previous_revision_keeps_rows_and_widens_ids(empty_database):
    url = empty_database
    db.upgrade(url, "0001")
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id, name, created_at) VALUES (7, 'kept', 1.0)"))
        db.upgrade(url)
        assert db.current_revision(engine) == db.head_revision()
        with engine.begin() as conn:
            assert conn.execute(text("SELECT name FROM tenants WHERE id = 7")).scalar() == "kept"
            conn.execute(
                text("INSERT INTO tenants (id, name, created_at) VALUES (:id, 'wide', 1.0)"), {"id": 2**40}
            )
            if conn.dialect.name == "postgresql":  # the sequence behind new ids goes past 2^31 as well
                conn.execute(text("SELECT setval('tenants_id_seq', :v)"), {"v": 2**40 + 5})
            conn.execute(text("INSERT INTO tenants (name, created_at) VALUES ('next', 1.0)"))
            assert conn.execute(text("SELECT id FROM tenants WHERE name = 'next'")).scalar() > 2**40
    finally:
        engine.dispose()


def test_upgrade_from_0002_keeps_jobs_and_counts_no_failures_for_them(empty_database):
    url = empty_database
    db.upgrade(url, "0002")
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id, name, created_at) VALUES (1, 't', 1.0)"))
            conn.execute(
                text(
                    "INSERT INTO users (id, name, role, tenant_id, created_at)"
                    " VALUES (1, 'u', 'member', 1, 1.0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO jobs (id, tenant_id, user_id, queue, name, spec, state, reason, cards,"
                    " submit_time, runs, cancel_requested) VALUES"
                    " (5, 1, 1, 't', 'old', '{}', 'running', '', 2, 1.0, 1, false)"
                )
            )
        db.upgrade(url, "0003")
        with engine.begin() as conn:
            row = conn.execute(text("SELECT name, state, failures FROM jobs WHERE id = 5")).one()
            assert tuple(row) == ("old", "running", 0)
            conn.execute(
                text(
                    "INSERT INTO job_runs (job_id, run, tenant_id, queue, model, cards, tflops_per_card,"
                    " start) VALUES (5, 1, 1, 't', 'ascend-910c', 2, 752.0, 1.0)"
                )
            )
    finally:
        engine.dispose()


def test_wanka_db_upgrade_creates_the_database_under_wanka_home(tmp_path):
    env = {**os.environ, "WANKA_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [sys.executable, "-m", "wanka.cli.main", "db", "upgrade"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "home" / "wanka.db").stat().st_mode & 0o077 == 0  # every tenant's jobs: owner only
    engine = db.make_engine(f"sqlite:///{tmp_path / 'home' / 'wanka.db'}")
    assert "jobs" in inspect(engine).get_table_names()
    engine.dispose()


def test_the_database_url_may_come_from_the_environment(tmp_path):
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    env = {**os.environ, "WANKA_HOME": str(tmp_path / "home"), "WANKA_DATABASE": url}
    out = subprocess.run(
        [sys.executable, "-m", "wanka.cli.main", "db", "upgrade"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and (tmp_path / "from-env.db").exists(), out.stderr
