"""The fleet backend's first schema: cabinets, records, alarms, commands, enrolments, people,
audit, and the hourly rollups (generated from backend/storage/schema.py by Alembic).

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alarms',
    sa.Column('cabinet_id', sa.String(length=64), nullable=False),
    sa.Column('alarm_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('raised_at', sa.String(length=40), nullable=True),
    sa.Column('cleared_at', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('cabinet_id', 'alarm_id')
    )
    op.create_table('audit',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('cabinet_id', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.create_index('audit_by_time', ['at'], unique=False)

    op.create_table('cabinets',
    sa.Column('cabinet_id', sa.String(length=64), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('lag_seconds', sa.Float(), nullable=True),
    sa.Column('temperature_celsius', sa.Float(), nullable=True),
    sa.Column('temperature_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('software_version', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('cabinet_id')
    )
    op.create_table('climate_hourly',
    sa.Column('cabinet_id', sa.String(length=64), nullable=False),
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('samples', sa.BigInteger(), nullable=False),
    sa.Column('celsius_min', sa.Float(), nullable=True),
    sa.Column('celsius_max', sa.Float(), nullable=True),
    sa.Column('celsius_sum', sa.Float(), nullable=False),
    sa.Column('door_openings', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('cabinet_id', 'hour')
    )
    op.create_table('commands',
    sa.Column('command_seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('command_id', sa.String(length=36), nullable=False),
    sa.Column('cabinet_id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('args', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('args_bytes', sa.Integer(), nullable=False),
    sa.Column('issued_by', sa.String(length=64), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('command_seq'),
    sa.UniqueConstraint('command_id')
    )
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.create_index('commands_pending', ['cabinet_id', 'status', 'command_seq'], unique=False)

    op.create_table('enrolments',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('cabinet_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('token_sha256')
    )
    op.create_table('login_failures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.create_index('login_failures_recent', ['username', 'at'], unique=False)

    op.create_table('records',
    sa.Column('cabinet_id', sa.String(length=64), nullable=False),
    sa.Column('record_id', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('record', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('cabinet_id', 'record_id')
    )
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.create_index('records_by_kind', ['kind', 'cabinet_id', 'seq'], unique=False)
        batch_op.create_index('records_by_time', ['kind', 'created_at'], unique=False)

    op.create_table('sales_hourly',
    sa.Column('cabinet_id', sa.String(length=64), nullable=False),
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('units', sa.BigInteger(), nullable=False),
    sa.Column('revenue_fen', sa.BigInteger(), nullable=False),
    sa.Column('sales', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('cabinet_id', 'hour', 'sku')
    )
    op.create_table('users',
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('username')
    )
    op.create_table('tokens',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['username'], ['users.username'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_sha256')
    )


def downgrade() -> None:
    op.drop_table('tokens')
    op.drop_table('users')
    op.drop_table('sales_hourly')
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.drop_index('records_by_time')
        batch_op.drop_index('records_by_kind')

    op.drop_table('records')
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index('login_failures_recent')

    op.drop_table('login_failures')
    op.drop_table('enrolments')
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.drop_index('commands_pending')

    op.drop_table('commands')
    op.drop_table('climate_hourly')
    op.drop_table('cabinets')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index('audit_by_time')

    op.drop_table('audit')
    op.drop_table('alarms')
