"""Recording: ``watch()``, the Recorder's hooks, on-device statistics and flushing.

``watch`` is the life cycle of a recording; ``gradients`` and ``activations`` take the
statistics of a step into the step ``buffer``, which flushes them to the trace schema.
"""

from .flushing import Flush, FlushListener
from .watch import Watch, watch

__all__ = ["Flush", "FlushListener", "Watch", "watch"]
