"""Deployments (issue 11): releases and their change records, progressive delivery with
automated analysis, the change calendar, database migrations and DORA metrics. The sandbox's
side (release catalogue, traffic split) is in :mod:`opsbook.sandbox`; the platform adapters
in :mod:`opsbook.platforms`."""
