"""Services: their specs and events, and the jobs that are their replicas

``services``: a tenant's long-running service (models.service) with the generation of its spec and
the replica count the autoscaler set. ``service_events``: its decisions and reasons. ``jobs``: a
replica's service, the spec generation it runs, and the address the gateway reaches it at.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("desired", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        # SQLite reuses the largest rowid once its row is gone: a new service would inherit a
        # deleted one's events and replicas' history (another tenant's); AUTOINCREMENT never does
        sqlite_autoincrement=True,
    )
    op.create_index("ix_services_tenant_id_name", "services", ["tenant_id", "name"], unique=True)
    op.create_table(
        "service_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("service_id", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_service_events_service_id_id", "service_events", ["service_id", "id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("service_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("service_generation", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("endpoint", sa.String(length=300), nullable=True))
    op.create_index("ix_jobs_service_id", "jobs", ["service_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_service_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("endpoint")
        batch.drop_column("service_generation")
        batch.drop_column("service_id")
    op.drop_index("ix_service_events_service_id_id", table_name="service_events")
    op.drop_table("service_events")
    op.drop_index("ix_services_tenant_id_name", table_name="services")
    op.drop_table("services")
