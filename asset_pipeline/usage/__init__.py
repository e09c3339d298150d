"""Usage: events (API and log files), daily reports (dbt on DuckDB), per-asset stats."""
