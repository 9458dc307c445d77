"""Isolation and hardening: token expiry, disabled users and tenants, prices with an effective
time, the scheduler lease

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

``tokens.expires_at`` (null: never); ``users.disabled_at`` and ``tenants.disabled_at`` (a disabled
account's tokens stop working, its history stays for billing); ``price_documents.effective_from``
(a price applies from then on; existing tables take effect when they were applied);
``ix_jobs_tenant_id_state``: a tenant's waiting jobs counted at each submission;
``jobs.cancel_reason``: who cancelled a job that was running, for its final record;
``scheduler_lease``: the one row a scheduling server holds, renewed while it leads.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.Float(), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled_at", sa.Float(), nullable=True))
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("disabled_at", sa.Float(), nullable=True))
    with op.batch_alter_table("price_documents") as batch:
        batch.add_column(sa.Column("effective_from", sa.Float(), nullable=True))
    op.execute("UPDATE price_documents SET effective_from = applied_at")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("cancel_reason", sa.Text(), nullable=True))
    op.create_index("ix_jobs_tenant_id_state", "jobs", ["tenant_id", "state"])
    op.create_table(
        "scheduler_lease",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("scheduler_lease")
    op.drop_index("ix_jobs_tenant_id_state", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cancel_reason")
    with op.batch_alter_table("price_documents") as batch:
        batch.drop_column("effective_from")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("disabled_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled_at")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("expires_at")
