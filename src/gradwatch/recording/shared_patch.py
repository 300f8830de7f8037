"""A process-wide patch of a library function, installed while any watch holds it.

gradwatch wraps two of torch's own functions while watches are open: ``clip_grad_norm_``
(``clip_observer.py``) and, for the first step, reentrant checkpointing's
``CheckpointFunction.apply`` (``structure.py``). Watches may nest, so one wrapper serves
every holder: the first :meth:`SharedPatch.add` installs it, the last
:meth:`SharedPatch.discard` puts the original back.
"""

from __future__ import annotations

from typing import Generic, TypeVar

U = TypeVar("U")


class SharedPatch(Generic[U]):
    """Reference-counted install/uninstall of one patch; subclasses say how to patch.

    Attributes:
        users: The holders, in the order they came; the wrapper hands its calls to them.
    """

    def __init__(self) -> None:
        self.users: list[U] = []
        self._installed = False

    def add(self, user: U) -> None:
        """Hold the patch for ``user`` (installed if it is the first holder)."""
        if user in self.users:
            return
        self.users.append(user)
        if not self._installed:
            self._installed = self._install()

    def discard(self, user: U) -> None:
        """Release ``user``'s hold (the original comes back after the last one)."""
        if user in self.users:
            self.users.remove(user)
        if not self.users and self._installed:
            self._uninstall()
            self._installed = False

    def _install(self) -> bool:
        """Install the wrapper; False when there is nothing to patch."""
        raise NotImplementedError

    def _uninstall(self) -> None:
        """Put the original back, unless someone wrapped it again meanwhile."""
        raise NotImplementedError
