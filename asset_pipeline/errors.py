"""Exceptions a user of the catalog can catch by name.

Every error the package raises on purpose is defined here (and re-exported by the package), so a
notebook or a service can write ``except asset_pipeline.PermissionDenied`` without knowing which
module raised it. The CLI prints any of them as one line and exits 2.
"""


class AssetPipelineError(Exception):
    """Base class: every error the package raises on purpose derives from it."""


class InvalidRequest(AssetPipelineError, ValueError):
    """An argument that cannot be acted on (a bad permission, an empty name, a date that is not one)."""


class HomeNotFound(AssetPipelineError):
    """The home named by $ASSET_PIPELINE_HOME (or ./data) does not exist: a typo must not create
    a new, empty home."""


class InputRejected(AssetPipelineError):
    """An inbox input (file or sidecar) cannot be ingested; `field` names the culprit."""

    def __init__(self, reason: str, field: str | None = None):
        reason = " ".join(reason.split())  # one line, whatever a decoder's message held
        super().__init__(reason)
        self.reason = reason
        self.field = field


class AssetNotFound(AssetPipelineError, KeyError):
    """No asset (or no such version of it) exists in the catalog."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "asset not found"


class ObjectMissing(AssetPipelineError):
    """A version points at a blob that is not in the object store."""


class ObjectCorrupt(ObjectMissing):
    """A blob's bytes did not hash to its key while being read; the local copy has been healed."""


class AssetUnavailable(AssetPipelineError):
    """The asset exists but its content cannot be served (archived or deleted)."""


class ConfigError(AssetPipelineError, ValueError):
    """A setting (environment variable or configuration value) is invalid; the message names it."""


class PermissionDenied(AssetPipelineError, PermissionError):
    """The user lacks the permission the action needs; nothing was changed."""


class CollectionNotFound(AssetPipelineError, KeyError):
    """No collection has that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "collection not found"


class LifecycleError(AssetPipelineError):
    """An action that cannot be applied to the asset in its current state."""


class PolicyError(AssetPipelineError, ValueError):
    """The retention configuration is invalid; the message names the policy and the field."""


class InvalidEvent(AssetPipelineError, ValueError):
    """A usage event that cannot be recorded; `field` names the culprit."""

    def __init__(self, reason: str, field: str):
        super().__init__(reason)
        self.reason, self.field = reason, field


class SearchError(AssetPipelineError, ValueError):
    """A search request that cannot be run as asked (bad filter, nothing to search with)."""


class NoEmbeddings(SearchError):
    """The home has no embedding table for the model asked for: search would find nothing."""


class ModelUnavailable(AssetPipelineError):
    """The configured model's weights cannot be loaded; the message says how to provide them."""


class QueryError(AssetPipelineError, ValueError):
    """SQL that DuckDB refused (syntax, unknown table or column); the message is DuckDB's first line."""


class CommitConflict(AssetPipelineError):
    """A commit kept losing to concurrent writers after every retry. The message says what was not
    written (a run's versions may land in part, each whole with its `assets` row); a re-run finishes it."""


class LockTimeout(AssetPipelineError):
    """Another process held the lock for longer than the caller was willing to wait."""


class RecallError(AssetPipelineError, ValueError):
    """A recall request that cannot be carried out; the message names the field."""


class LocationError(AssetPipelineError, ValueError):
    """A home, store or replica URI that names no place the pipeline can use."""


class UnsafeStore(AssetPipelineError):
    """The S3 endpoint ignores conditional writes: concurrent commits would silently lose data."""


class MassDeleteRefused(AssetPipelineError):
    """The sweep would delete more than the configured share; nothing was changed."""


class OutputError(AssetPipelineError):
    """The output path cannot be written as asked; nothing was written."""
