"""Stock, reviews and adjustments for the back office: what each cabinet holds (count, price,
par), the records a person must review, and the corrections they make.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'cabinet_products',
        sa.Column('cabinet_id', sa.String(length=64), nullable=False),
        sa.Column('sku', sa.String(length=64), nullable=False),
        sa.Column('shelf', sa.Integer(), nullable=True),
        sa.Column('name_zh', sa.String(length=200), nullable=True),
        sa.Column('name_en', sa.String(length=200), nullable=True),
        sa.Column('price_fen', sa.BigInteger(), nullable=True),
        sa.Column('count', sa.BigInteger(), nullable=True),
        sa.Column('counted_at', Time, nullable=True),
        sa.Column('par', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('cabinet_id', 'sku'))
    op.create_table(
        'reviews',
        sa.Column('cabinet_id', sa.String(length=64), nullable=False),
        sa.Column('record_id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=False),
        sa.Column('created_at', Time, nullable=False),
        sa.Column('resolved_at', Time, nullable=True),
        sa.Column('adjustment_id', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('cabinet_id', 'record_id'))
    op.create_index('reviews_open', 'reviews', ['created_at'],
                    postgresql_where=sa.text('resolved_at IS NULL'),
                    sqlite_where=sa.text('resolved_at IS NULL'))
    op.create_table(
        'adjustments',
        sa.Column('adjustment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=True, nullable=False),
        sa.Column('cabinet_id', sa.String(length=64), nullable=False),
        sa.Column('record_id', sa.String(length=36), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('lines', Json, nullable=False),
        sa.Column('revenue_delta_fen', sa.BigInteger(), nullable=False),
        sa.Column('units_delta', sa.BigInteger(), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('made_by', sa.String(length=64), nullable=False),
        sa.Column('made_at', Time, nullable=False),
        sa.PrimaryKeyConstraint('adjustment_id'))
    op.create_index('adjustments_by_time', 'adjustments', ['made_at'])
    op.create_index('adjustments_by_record', 'adjustments', ['cabinet_id', 'record_id'],
                    unique=True)


def downgrade() -> None:
    op.drop_table('adjustments')
    op.drop_table('reviews')
    op.drop_table('cabinet_products')
