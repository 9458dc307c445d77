"""Node events (the audit stream) and console sessions' parent tokens

``node_events``: every change of a node's state, with who or what made it. ``tokens.parent_id``: a
console session's token points at the API token it was signed in with, and ends with it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "node_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("node", sa.String(length=128), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_node_events_time", "node_events", ["time"])
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("parent_id", ID, nullable=True))
        batch.create_foreign_key("fk_tokens_parent_id_tokens", "tokens", ["parent_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_constraint("fk_tokens_parent_id_tokens", type_="foreignkey")
        batch.drop_column("parent_id")
    op.drop_index("ix_node_events_time", table_name="node_events")
    op.drop_table("node_events")
