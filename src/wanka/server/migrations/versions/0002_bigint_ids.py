"""64-bit ids in PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

PostgreSQL's INTEGER (and the sequences behind SERIAL) stop at 2^31 - 1; ids and the foreign keys
that point at them become BIGINT. SQLite's INTEGER PRIMARY KEY is 64-bit already: nothing to do.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# table -> its foreign-key id columns
TABLES = {
    "tenants": [],
    "users": ["tenant_id"],
    "tokens": ["user_id"],
    "quota_documents": ["applied_by"],
    "nodes": [],
    "jobs": ["tenant_id", "user_id"],
    "job_events": ["job_id"],
}


def _retype(new: sa.types.TypeEngine, sequence_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, foreign in TABLES.items():
        for column in ["id", *foreign]:
            op.alter_column(table, column, type_=new)
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS {sequence_type}")


def upgrade() -> None:
    _retype(sa.BigInteger(), "bigint")


def downgrade() -> None:
    _retype(sa.Integer(), "integer")
