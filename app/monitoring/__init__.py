"""Checks and the alert lifecycle: decisions over the database, no network I/O."""
