"""Backup and recovery (issue 13). This first slice covers the embedded default: the sandbox
ledger on SQLite, backed up with SQLite's online backup API, compressed, encrypted with a key
from the secrets mechanism (never stored beside the backup), copied to a second location that
stands for the DR region's storage, catalogued, and verified by restoring it into a scratch
database and checking it. PostgreSQL (pgBackRest/Barman), point-in-time recovery and the DR
region are later slices."""
