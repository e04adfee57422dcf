"""Alerts: the operators' rules, each alert's life and its deliveries by email and webhook.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Time = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'alert_rules',
        sa.Column('rule_id', Id, autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('minutes', sa.Float(), nullable=False),
        sa.Column('band_celsius', sa.Float(), nullable=False),
        sa.Column('cabinet_id', sa.String(length=64), nullable=True),
        sa.Column('emails', Json, nullable=False),
        sa.Column('webhook_url', sa.Text(), nullable=True),
        sa.Column('webhook_secret', sa.String(length=64), nullable=True),
        sa.Column('quiet_start', sa.String(length=5), nullable=True),
        sa.Column('quiet_end', sa.String(length=5), nullable=True),
        sa.Column('tz', sa.String(length=64), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', Time, nullable=False),
        sa.PrimaryKeyConstraint('rule_id'))
    op.create_table(
        'alerts',
        sa.Column('alert_id', Id, autoincrement=True, nullable=False),
        sa.Column('rule_id', sa.BigInteger(), nullable=False),
        sa.Column('cabinet_id', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('since', Time, nullable=False),
        sa.Column('fired_at', Time, nullable=True),
        sa.Column('resolved_at', Time, nullable=True),
        sa.PrimaryKeyConstraint('alert_id'))
    op.create_index('alerts_open', 'alerts', ['rule_id', 'state'])
    op.create_index('alerts_by_time', 'alerts', ['since'])
    op.create_table(
        'alert_deliveries',
        sa.Column('delivery_id', Id, autoincrement=True, nullable=False),
        sa.Column('alert_id', sa.BigInteger(), nullable=False),
        sa.Column('event', sa.String(length=16), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('target', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', Time, nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('sent_at', Time, nullable=True),
        sa.PrimaryKeyConstraint('delivery_id'))
    op.create_index('alert_deliveries_due', 'alert_deliveries', ['status', 'next_attempt_at'])
    op.create_index('alert_deliveries_by_alert', 'alert_deliveries', ['alert_id'])


def downgrade() -> None:
    op.drop_table('alert_deliveries')
    op.drop_table('alerts')
    op.drop_table('alert_rules')
