"""drop the decisions.backend index: no query uses it, and every row paid for it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

The dashboard and `stats` read the log by time (`ix_decisions_created_at`) and group by backend
after that range scan; a lookup by backend alone never happens. With a handful of backends the
index is also too coarse to help one. It cost each decision row a second B-tree insert in the
writer thread (about 0.5 µs of the router's CPU per request, docs/performance.md).
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_decisions_backend', table_name='decisions')


def downgrade() -> None:
    op.create_index('ix_decisions_backend', 'decisions', ['backend'], unique=False)
