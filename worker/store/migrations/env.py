"""Alembic environment: runs online against the engine given in ``config.attributes["engine"]``."""

from __future__ import annotations

from alembic import context

from worker.store.db import load_all_models

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=load_all_models(),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
