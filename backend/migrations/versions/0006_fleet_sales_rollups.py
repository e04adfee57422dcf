"""The fleet's sales rollups: per hour and product, per cabinet and day, filled from the
per-cabinet hourly rollup; and an index on its hour for the fleet's short periods.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_index('sales_hourly_by_hour', 'sales_hourly', ['hour'])
    op.create_table(
        'sales_fleet_hourly',
        sa.Column('hour', Time, nullable=False),
        sa.Column('sku', sa.String(length=64), nullable=False),
        sa.Column('units', sa.BigInteger(), nullable=False),
        sa.Column('revenue_fen', sa.BigInteger(), nullable=False),
        sa.Column('sales', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('hour', 'sku'))
    op.create_table(
        'sales_cabinet_daily',
        sa.Column('day', Time, nullable=False),
        sa.Column('cabinet_id', sa.String(length=64), nullable=False),
        sa.Column('units', sa.BigInteger(), nullable=False),
        sa.Column('revenue_fen', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'cabinet_id'))
    op.execute("INSERT INTO sales_fleet_hourly (hour, sku, units, revenue_fen, sales) "
               "SELECT hour, sku, sum(units), sum(revenue_fen), sum(sales) FROM sales_hourly "
               "GROUP BY hour, sku")
    # The UTC day, whatever the session's time zone (date_trunc alone would use it).
    day = ("date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
           if op.get_bind().dialect.name == "postgresql"
           else "strftime('%Y-%m-%d 00:00:00.000000', hour)")
    op.execute(f"INSERT INTO sales_cabinet_daily (day, cabinet_id, units, revenue_fen) "
               f"SELECT {day}, cabinet_id, sum(units), sum(revenue_fen) FROM sales_hourly "
               f"GROUP BY {day}, cabinet_id")


def downgrade() -> None:
    op.drop_table('sales_cabinet_daily')
    op.drop_table('sales_fleet_hourly')
    op.drop_index('sales_hourly_by_hour', 'sales_hourly')
