"""opsbook sandbox."""
