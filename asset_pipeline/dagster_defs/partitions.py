"""The daily partitions of the usage reports and the retention sweep, starting at a date that fits
the home.

A fixed start far in the past shows hundreds of "missing" days in the UI of a home created last
week, and makes a range backfill of "everything" launch work for days that cannot hold data. The
start is the deployment's choice (ASSET_PIPELINE_PARTITIONS_START); unset, it is a month before the
home was created — room for usage logs written before the home existed (the quick start reports
yesterday) — read from the `assets` Delta table's creation time, which survives checkpoints and
log cleanup. Before the first ingest there is no such table and the start is a month before today.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from asset_pipeline.settings import Settings

LOOKBACK = timedelta(days=30)


def home_created(settings: Settings) -> date | None:
    """The day the home's `assets` table was created (None: no table yet)."""
    from asset_pipeline.tables import Tables

    table = Tables(settings.home / "tables").open("assets")
    if table is None:
        return None
    created_ms = table.metadata().created_time
    return datetime.fromtimestamp(created_ms / 1000, UTC).date() if created_ms else None


def partitions_start(settings: Settings, today: date | None = None) -> date:
    if settings.partitions_start:
        return date.fromisoformat(settings.partitions_start)
    created = home_created(settings) or today or datetime.now(UTC).date()
    return created - LOOKBACK


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day from `partitions_start` on."""
    return dg.DailyPartitionsDefinition(start_date=partitions_start(settings).isoformat(), timezone="UTC")
