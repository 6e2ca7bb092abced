"""Persistence: SQLAlchemy tables and repositories, Alembic migrations, the content-addressed artifact store."""
