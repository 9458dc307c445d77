"""Alembic environment: the URL comes from the config wanka builds (server/db.py), never a file."""

from alembic import context
from sqlalchemy import create_engine

from wanka.server.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
