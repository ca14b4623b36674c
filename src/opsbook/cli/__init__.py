"""opsbook cli."""
