"""opsbook platforms."""
