"""The newest planogram each cabinet reported (record kind `planogram`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'planograms',
        sa.Column('cabinet_id', sa.String(length=64), nullable=False),
        sa.Column('version', sa.String(length=200), nullable=True),
        sa.Column('document', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'),
                  nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('cabinet_id'))


def downgrade() -> None:
    op.drop_table('planograms')
