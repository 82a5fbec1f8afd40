"""Vigil's Python SDK: feature flags evaluated in memory, with the same
flag model, bucketing and telemetry contract as the Go and TypeScript SDKs."""

from vigil.bucket import BUCKETING_VERSION, bucket, hash_unit, unit_bucket
from vigil.client import Client, Config, ConfigError
from vigil.documents import DocumentError, load_flags_file, parse_flags, read_snapshot_document
from vigil.flag import Detail, ErrorType, EvalContext, FieldError, Flag, Reason, Snapshot, ValidationError

__all__ = [
    "BUCKETING_VERSION",
    "Client",
    "Config",
    "ConfigError",
    "Detail",
    "DocumentError",
    "ErrorType",
    "EvalContext",
    "FieldError",
    "Flag",
    "Reason",
    "Snapshot",
    "ValidationError",
    "bucket",
    "hash_unit",
    "load_flags_file",
    "parse_flags",
    "read_snapshot_document",
    "unit_bucket",
]
