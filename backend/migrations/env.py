"""Alembic's environment for the backend: the URL comes from `cabinet-backend migrate` (the
config's database), the target is backend/storage/schema.py's metadata. On PostgreSQL a migration
holds an advisory lock, so instances started together migrate one at a time."""

from alembic import context
import sqlalchemy as sa

from backend.storage.engine import make_engine
from backend.storage.schema import metadata

MIGRATION_LOCK = 0x6361626E  # "cabn": pg_advisory_lock's key for migrations


def run() -> None:
    config = context.config
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url, pool_size=1)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
    engine.dispose()


run()
