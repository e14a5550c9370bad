"""Alembic migrations of the core schema; run them with `ils init` or `ils.schema`.

Layer: `ils`. `env.py` is configured programmatically by `ils.schema`; no
alembic.ini is needed at run time.
"""
