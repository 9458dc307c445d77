"""How each task ended, in sacct's words

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

``task_runs.state``: ``completed``, ``failed``, ``cancelled``, ``timeout``, ``preempted``,
``node_fail``, ``resized`` or ``lost`` (sacct's step states, plus wanka's shrink). A task that wanka
stopped (a cancel, a time limit, a preemption) is recorded as that, not as ``failed`` with the
SIGTERM it died of. Null for runs recorded before this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_runs") as batch:
        batch.add_column(sa.Column("state", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_runs") as batch:
        batch.drop_column("state")
