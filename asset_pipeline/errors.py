"""Exceptions a user of the catalog can catch by name."""


class AssetPipelineError(Exception):
    """Base class: every error the package raises on purpose derives from it."""


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


class AssetUnavailable(AssetPipelineError):
    """The asset exists but its content cannot be served (archived or deleted)."""


class ConfigError(AssetPipelineError, ValueError):
    """A setting (environment variable or configuration value) is invalid; the message names it."""
