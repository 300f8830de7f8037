"""A loop whose watched optimizer never steps, or stops: its losses go on, its steps do not.

The watch records at the steps of the optimizer given to ``gw.watch``. A loop that forgets
``optimizer.step()``, or steps the model with another optimizer (one built anew inside the
loop, which also restarts Adam's statistics at every step), leaves the watch with no step,
or with the few before it, and so every rule with nothing to read: such a run read "No
problem found: no rule fired". The watch counts the logged values that carry an autograd
graph (training losses; ``meta["config"]["logged_losses"]``, recording/loop.py): many since
the last step it saw, against the one or few a step before, is this mistake, said in every
alarm without remedies, or as the note.

Measured (a 64-64-64-10 ReLU MLP on digits, 300 steps, the loss logged with its graph): with
no ``optimizer.step()`` the trace held 0 steps and the loss stayed at 2.30; with a new Adam
built after every step it held 1 step (the model trained, 2.28 -> 0.14, unrecorded). Both
read "No problem found".

Example:
    >>> from gradwatch.trace import Trace
    >>> t = Trace.from_arrays(["fc"], [], {})
    >>> t.meta["config"] = {"logged_losses": {"with_graph": 300, "since_last_step": 300}}
    >>> stepless_note([], t)[:52]
    'The watched optimizer never stepped: the loss was lo'
"""

from __future__ import annotations

from ..trace import Trace
from ._loop import loop_config
from .finding import LoopMistake

#: Losses with a graph logged since the last watched step that make the mistake (our
#: choice: a loop logs one per step, a few under gradient accumulation; twenty is no habit).
MIN_LOGS = 20
#: ... and at least this many times the losses logged per step before it (our choice: an
#: accumulation's micro-batches log as many at every step, the last included).
PER_STEP_FACTOR = 4.0


def stepless_logs(trace: Trace) -> dict[str, int | float | None] | None:
    """``{"since_last_step": n, "steps": s, "per_step": r}`` when ``n`` training losses were
    logged since the last of the ``s`` steps of the watched optimizer began, at least
    :data:`MIN_LOGS` and :data:`PER_STEP_FACTOR` times the ``r`` logged per step before it
    (None where no step came before it: one a step is taken); else None."""
    seen = loop_config(trace, "logged_losses")
    if seen is None:
        return None
    total, since = seen.get("with_graph"), seen.get("since_last_step")
    if not isinstance(total, int) or not isinstance(since, int) or since < MIN_LOGS:
        return None
    mode = loop_config(trace, "train_mode")
    counted = mode.get("steps") if mode is not None else None
    steps = counted if isinstance(counted, int) else len(trace.steps)
    # The steps before the last, each with the losses logged until the next one began.
    per_step = (total - since) / (steps - 1) if steps > 1 else None
    if steps and since < PER_STEP_FACTOR * max(per_step or 0.0, 1.0):
        return None
    return {
        "since_last_step": since,
        "steps": steps,
        "per_step": None if per_step is None else round(per_step, 3),
    }


def _sentence(seen: dict[str, int | float | None]) -> str:
    n, steps, per_step = seen["since_last_step"], seen["steps"], seen["per_step"]
    if not steps:
        what = (
            f"The watched optimizer never stepped: the loss was logged {n} times with its "
            "graph and no step of the optimizer given to `gw.watch` was seen, so nothing was "
            "recorded"
        )
    else:
        against = "" if per_step is None else f" (against {per_step:.2g} a step before it)"
        what = (
            f"The watched optimizer stopped stepping: since the last of its {steps} step(s) "
            f"the loss was logged {n} times with its graph{against}, so what followed was "
            "not recorded"
        )
    return (
        f"{what}. Call `optimizer.step()` after `backward()`, on the optimizer given to "
        "`gw.watch` (one built anew inside the loop is another optimizer, and restarts "
        "Adam's statistics at every step)"
    )


#: Read by the settling passes (``loop_mistakes.py``): ``settle_stepless`` tells every
#: alarm, ``stepless_note`` is the note where none carries it.
STEPLESS = LoopMistake(stepless_logs, _sentence, "stepless")
settle_stepless, stepless_note = STEPLESS.settle, STEPLESS.note
