"""opsbook: executable, verified, audited operations runbooks.

Nothing happens at import time: no engine, no connection, no logging configuration.
"""

__version__ = "0.1.0"
