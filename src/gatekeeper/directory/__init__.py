"""The customer directory's read path: a bounded cache over the records in Redis, the catalog,
the policy file's seed customers, and the invalidation listener that keeps a process true."""

from gatekeeper.directory.cache import Lru
from gatekeeper.directory.live import DirectoryStats, LiveDirectory

__all__ = ["DirectoryStats", "LiveDirectory", "Lru"]
