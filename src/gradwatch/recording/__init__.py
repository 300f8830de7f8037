"""Recording: ``watch()``, the Recorder's hooks, on-device statistics and flushing."""

from .recorder import Watch, watch

__all__ = ["Watch", "watch"]
