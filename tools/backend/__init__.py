"""Test peers for the backend protocol: the fault proxy (faults.py) and a private PostgreSQL
server (postgres.py). The backend itself is the top-level `backend` package."""
