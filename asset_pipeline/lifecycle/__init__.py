"""Lifecycle: retention policies, archive/restore, soft and hard delete, table upkeep, audit."""
