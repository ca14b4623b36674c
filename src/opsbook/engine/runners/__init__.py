"""opsbook engine/runners."""
