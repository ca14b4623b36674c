"""State storage: a thin DB-API layer over SQLite (embedded default) and PostgreSQL.

See docs/adr/0002-db-api-journal.md for why the hot path uses DB-API rather than the ORM.
The schema is owned by Alembic migrations in ``opsbook/db/migrations`` and applied
automatically by :func:`open_database`.
"""

from opsbook.db._database import FULL_CHECK_EVERY, Database, open_database, state_files

__all__ = ["FULL_CHECK_EVERY", "Database", "open_database", "state_files"]
