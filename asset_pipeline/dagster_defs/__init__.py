"""Dagster shells around the plain modules: resources, assets per group, sensors, jobs."""
