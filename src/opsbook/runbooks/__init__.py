"""opsbook runbooks."""
