"""decision details (candidates, skipped, failed attempts, clamped max_tokens); gaming backend

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions') as batch:
        # Comma-separated backend names, in the order they would be tried.
        batch.add_column(sa.Column('candidates', sa.String(), nullable=True))
        # JSON object: backend name -> why it was skipped.
        batch.add_column(sa.Column('skipped', sa.String(), nullable=True))
        # JSON array of {"backend", "error"} for each candidate that failed before the first byte.
        batch.add_column(sa.Column('failures', sa.String(), nullable=True))
        batch.add_column(sa.Column('max_tokens_clamped', sa.Integer(), nullable=True))
    with op.batch_alter_table('gaming_mode_changes') as batch:
        batch.add_column(sa.Column('backend', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('gaming_mode_changes') as batch:
        batch.drop_column('backend')
    with op.batch_alter_table('decisions') as batch:
        batch.drop_column('max_tokens_clamped')
        batch.drop_column('failures')
        batch.drop_column('skipped')
        batch.drop_column('candidates')
