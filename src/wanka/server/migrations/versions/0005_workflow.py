"""The everyday workflow: idempotent submission, holds and job arrays

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

``jobs.idempotency_key``: the client's key for one submission (the ``Idempotency-Key`` header); a
retry with the same key gets the job it created, never a second one (unique per tenant; NULLs never
collide). ``jobs.held_by``: who holds a held job, ``user`` or ``admin`` (a member cannot release an
operator's hold, as in Slurm); null for a job the scheduler held itself. ``jobs.array_job_id``,
``array_index``, ``array_max_running``: an element of a job array (the array's id is its first
element's, as Slurm's ArrayJobID), its index and the array's throttle (Slurm's ``%N``).
``queue_holds``: queues an admin holds (Kueue's stopPolicy Hold, a Slurm partition set INACTIVE):
their jobs wait, whatever is free. ``task_runs``: how each task of each run ended (node, cards,
exit code, peak memory), for ``wanka acct``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("held_by", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("array_job_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("array_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("array_max_running", sa.Integer(), nullable=True))
    op.create_index("ix_jobs_array_job_id", "jobs", ["array_job_id"])
    op.create_table(
        "queue_holds",
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("held_at", sa.Float(), nullable=False),
        sa.Column("held_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["held_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("queue"),
    )
    op.create_table(
        "task_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("task", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=128), nullable=False),
        sa.Column("cards", sa.Integer(), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("max_rss_kib", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_runs_job_id_run_task", "task_runs", ["job_id", "run", "task"], unique=True)
    op.create_index(
        "ix_jobs_tenant_id_idempotency_key", "jobs", ["tenant_id", "idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_task_runs_job_id_run_task", table_name="task_runs")
    op.drop_table("task_runs")
    op.drop_table("queue_holds")
    op.drop_index("ix_jobs_tenant_id_idempotency_key", table_name="jobs")
    op.drop_index("ix_jobs_array_job_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("array_max_running")
        batch.drop_column("array_index")
        batch.drop_column("array_job_id")
        batch.drop_column("held_by")
        batch.drop_column("idempotency_key")
