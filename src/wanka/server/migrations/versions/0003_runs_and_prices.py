"""Job runs (metering) and price tables; a job's failure count

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

``job_runs`` records each run of a job on its cards, which usage and bills are computed from;
``price_documents`` keeps every price table applied; ``jobs.failures`` counts failed runs against a
job's restart budget.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "job_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("cards", sa.Integer(), nullable=False),
        sa.Column("tflops_per_card", sa.Float(), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_runs_job_id_run", "job_runs", ["job_id", "run"], unique=True)
    op.create_index("ix_job_runs_tenant_id_start", "job_runs", ["tenant_id", "start"])
    op.create_table(
        "price_documents",
        sa.Column("id", ID, nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("applied_at", sa.Float(), nullable=False),
        sa.Column("applied_by", ID, nullable=False),
        sa.ForeignKeyConstraint(["applied_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("price_documents")
    op.drop_index("ix_job_runs_tenant_id_start", table_name="job_runs")
    op.drop_index("ix_job_runs_job_id_run", table_name="job_runs")
    op.drop_table("job_runs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("failures")
