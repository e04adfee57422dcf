"""The cabinet's row keeps its last reported setpoint and the time of its last sale, so the back
office's fleet page reads one row per cabinet (no scan of the records).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cabinets') as table:
        table.add_column(sa.Column('setpoint_celsius', sa.Float(), nullable=True))
        table.add_column(sa.Column('last_sale_at', sa.DateTime(timezone=True), nullable=True))
    # From the sales already stored (else a "no sales" alert fires for every cabinet at once).
    op.execute("UPDATE cabinets SET last_sale_at = (SELECT max(created_at) FROM records "
               "WHERE records.cabinet_id = cabinets.cabinet_id AND records.kind = 'sale')")


def downgrade() -> None:
    with op.batch_alter_table('cabinets') as table:
        table.drop_column('last_sale_at')
        table.drop_column('setpoint_celsius')
