"""Cabinets with several doors and temperature zones: their layout (record kind `layout`), each
zone's newest reading and the hourly climate of zones 2 and up.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'layouts',
        sa.Column('cabinet_id', sa.String(length=64), nullable=False),
        sa.Column('document', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'),
                  nullable=False),
        sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('cabinet_id'))
    op.create_table(
        'zone_readings',
        sa.Column('cabinet_id', sa.String(length=64), nullable=False),
        sa.Column('zone', sa.Integer(), nullable=False),
        sa.Column('celsius', sa.Float(), nullable=False),
        sa.Column('setpoint_celsius', sa.Float(), nullable=True),
        sa.Column('reading_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('cabinet_id', 'zone'))
    op.create_table(
        'zone_climate_hourly',
        sa.Column('cabinet_id', sa.String(length=64), nullable=False),
        sa.Column('zone', sa.Integer(), nullable=False),
        sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
        sa.Column('samples', sa.BigInteger(), nullable=False),
        sa.Column('celsius_min', sa.Float(), nullable=True),
        sa.Column('celsius_max', sa.Float(), nullable=True),
        sa.Column('celsius_sum', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('cabinet_id', 'zone', 'hour'))


def downgrade() -> None:
    op.drop_table('zone_climate_hourly')
    op.drop_table('zone_readings')
    op.drop_table('layouts')
