"""Monitoring: see docs/monitoring.md."""
