"""Archive, restore, delete and undelete one asset at a time, as a user does from a notebook or the
CLI: the home's stores and retention settings (grace period, archive storage class) applied to
`Lifecycle`, with the acting user on every audit row."""

from __future__ import annotations

from datetime import timedelta

from asset_pipeline.home import Home
from asset_pipeline.lifecycle.actions import Lifecycle
from asset_pipeline.lifecycle.policies import RetentionConfig, load_config
from asset_pipeline.locks import USER_LOCK_TIMEOUT_S


class LifecycleService:
    def __init__(self, home: Home):
        self.home = home

    def retention(self) -> RetentionConfig:
        """``<home>/retention.yaml`` (read at each call: it is edited by hand)."""
        return load_config(self.home.settings.retention_file)

    def lifecycle(self, storage_class: str | None = None) -> Lifecycle:
        """`Lifecycle` over the home's stores, holding the home's lifecycle lock while it acts."""
        retention = self.retention()
        return Lifecycle(self.home.tables, self.home.store,
                         self.home.archive_store(storage_class or retention.archive_storage_class),
                         self.home.settings.lancedb_dir, blob_grace=timedelta(hours=retention.blob_grace_hours),
                         exclusive=lambda: self.home.lock("lifecycle", timeout_s=USER_LOCK_TIMEOUT_S))

    def archive(self, asset_id: str, by: str) -> None:
        self.lifecycle().archive(asset_id, by=by)

    def restore(self, asset_id: str, by: str) -> None:
        self.lifecycle().restore(asset_id, by=by)

    def delete(self, asset_id: str, by: str) -> None:
        self.lifecycle().delete(asset_id, by=by)

    def undelete(self, asset_id: str, by: str) -> None:
        self.lifecycle().undelete(asset_id, self.retention().grace_period_days, by=by)
