"""The operators' backend: the service the cabinets sync with and the operators run the fleet
from (FastAPI on uvicorn, SQLAlchemy Core with Alembic on PostgreSQL or SQLite).

One of the project's three deployables: `cabinet` (the daemon on the Pi), `backend` (this, on a
server), `tools` (images, benchmarks and test peers, never deployed). See docs/backend.md."""
