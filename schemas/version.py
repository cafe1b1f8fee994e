"""Schema version of every record. Bump the major number on any incompatible field change."""

SCHEMA_VERSION = "1.0"
