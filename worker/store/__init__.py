"""Durable store: SQLAlchemy 2 models, engine/session setup, queries, Alembic migrations.

PostgreSQL in production, SQLite as the embedded default; the same code and tests run on both.
"""
