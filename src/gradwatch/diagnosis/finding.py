"""What a rule reports: a :class:`Finding`, with the remedies it recommends."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .._activations import ACTIVATION_IDS
from ..trace.cards import (
    DepthProfile,
    badge,
    card,
    esc,
    layer_list,
    muted,
    sparkline_block,
)

Severity = Literal["info", "warning", "critical"]

#: Order used to sort findings, most severe first.
SEVERITY_RANK: dict[str, int] = {"critical": 2, "warning": 1, "info": 0}

#: Stable rule ids (DESIGN.md). Users filter on them; never rename one.
RULE_IDS: tuple[str, ...] = (
    "vanishing_gradient",
    "exploding_gradient",
    "nonfinite_gradient",
    "stalled_early_layers",
    "collapsing_weights",
    "loss_plateau",
    "saturated_activation",
    "dead_units",
    "poor_initialization",
    "short_memory",
    "unstable_updates",
)

#: Activation remedies: one remedy id per activation gradwatch can swap in (the swappable
#: ids of the one activation table, :mod:`gradwatch._activations`).
ACTIVATION_REMEDY_IDS: tuple[str, ...] = ACTIVATION_IDS

#: Stable remedy ids (DESIGN.md), understood by ``gradwatch.remedies.apply``.
REMEDY_IDS: tuple[str, ...] = (
    "residual",
    "layerwise_pretraining",
    "lstm",
    "gru",
    *ACTIVATION_REMEDY_IDS,
    "batchnorm",
    "layernorm",
    "init_xavier",
    "init_he",
    "init_lecun",
    "init_orthogonal",
    "init_identity",
    "init_lsuv",
    "clip_norm",
    "clip_value",
    "clip_adaptive",
    "lr_warmup",
    "lower_lr",
    "raise_lr",
    "reduce_depth",
    "faster_hardware",
)


@dataclass(frozen=True)
class RemedyHint:
    """A remedy a finding recommends, with the one-line reason it fits."""

    id: str
    reason: str


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem.

    Attributes:
        rule: Stable rule id, one of :data:`RULE_IDS`.
        severity: ``"info"``, ``"warning"`` or ``"critical"``.
        layers: Module names of the layers concerned, most relevant first (the
            machine-readable form: ``Trace.layer_names`` entries).
        steps: First and last step of the evidence, or ``None`` for a run-wide finding.
        evidence: Observed values and the thresholds they crossed (JSON-serialisable).
        message: One plain sentence that says what is wrong and why.
        remedies: Ranked remedies, best first.
        layer_labels: The same layers as people read them, ``L<depth> <name>``
            (``Trace.layer_label``); filled in by :func:`~gradwatch.diagnosis.diagnose`,
            empty for a finding built by hand. Not part of equality.
    """

    rule: str
    severity: Severity
    layers: tuple[str, ...]
    steps: tuple[int, int] | None
    evidence: dict[str, Any] = field(hash=False, compare=True)
    message: str
    remedies: tuple[RemedyHint, ...] = ()
    layer_labels: tuple[str, ...] = field(default=(), compare=False)

    @property
    def shown_layers(self) -> tuple[str, ...]:
        """The layers as every view shows them: the labels when known, else the names."""
        if len(self.layer_labels) == len(self.layers):
            return self.layer_labels
        return tuple(s or "(root)" for s in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "layers": list(self.layers),
            "layer_labels": list(self.shown_layers),
            "steps": list(self.steps) if self.steps is not None else None,
            "evidence": self.evidence,
            "message": self.message,
            "remedies": [{"id": r.id, "reason": r.reason} for r in self.remedies],
        }

    def _html_body(self) -> str:
        """The finding's lines (message, layers, steps, remedies, evidence) as HTML."""
        steps = f"steps {self.steps[0]}–{self.steps[1]}" if self.steps else "whole run"
        where = f"{layer_list(self.shown_layers)} · " if self.layers else ""
        parts = [f"<div>{esc(self.message)}</div>", muted(f"{where}{esc(steps)}")]
        if self.remedies:
            items = "".join(
                f"<li><code>{esc(r.id)}</code>: {esc(r.reason)}</li>" for r in self.remedies[:3]
            )
            parts.append(
                f'<div style="font-size:12px">Remedies, best first:'
                f'<ol style="margin:0 0 0 18px;padding:0">{items}</ol></div>'
            )
        if self.evidence:
            cell = '<td style="padding:0 8px 0 0">'
            rows = "".join(
                f"<tr>{cell}{esc(k)}</td><td><code>{esc(v)}</code></td></tr>"
                for k, v in self.evidence.items()
            )
            parts.append(
                f'<details style="font-size:12px"><summary>evidence</summary>'
                f"<table>{rows}</table></details>"
            )
        return "".join(parts)

    def _repr_html_(self) -> str:
        """A compact card for Jupyter; every name and message is HTML-escaped."""
        title = badge(self.severity, self.severity) + f"<code>{esc(self.rule)}</code>"
        return card(title, self._html_body(), self.severity)


def alarms_besides(findings: Iterable[Finding], rule: str) -> bool:
    """Whether a finding of a rule other than ``rule`` is a warning or critical: what the
    settling passes (``symptoms``, ``recovered``) ask before telling a finding it stands
    alone."""
    return any(f.rule != rule and is_alarm(f) for f in findings)


def settled(
    f: Finding,
    message: str,
    severity: Severity | None = None,
    *,
    remedies: tuple[RemedyHint, ...] = (),
    **evidence: object,
) -> Finding:
    """``f`` as a settling pass (``symptoms``, ``recovered``) tells it: with ``message``, the
    ``evidence`` added, ``severity`` where given, and only the ``remedies`` the pass names
    (none by default: what it found is not a lost gradient that the structural remedies
    would mend)."""
    return replace(
        f,
        severity=f.severity if severity is None else severity,
        message=message,
        evidence={**f.evidence, **evidence},
        remedies=remedies,
    )


def is_alarm(f: Finding) -> bool:
    """Whether ``f`` is a warning or critical."""
    return SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"]


def told_alarms(
    findings: list[Finding],
    sentence: str,
    *,
    skip: Callable[[Finding], bool] | None = None,
    keep_remedies: bool = False,
    **evidence: Any,
) -> list[Finding]:
    """``findings`` with every alarm (but those ``skip`` picks) told a mistake of the training
    loop that may be its cause: `` {sentence}; this may be its cause.`` after its message,
    ``evidence`` added and no remedies (none of the catalogue mends the loop, and the others
    would be retrained in it). What ``eval_mode``, ``loss_input`` and ``unstepped`` do; inputs
    far from unit scale (``input_scale``) may be one cause among others: ``keep_remedies``."""
    told = f" {sentence}; this may be its cause."
    return [
        settled(f, f.message + told, remedies=f.remedies if keep_remedies else (), **evidence)
        if is_alarm(f) and not (skip is not None and skip(f))
        else f
        for f in findings
    ]


@dataclass(frozen=True)
class LoopMistake:
    """A mistake of the training loop read off the trace, told in every alarm or as a note.

    ``seen`` reads its record from the trace (None where the trace shows none), ``sentence``
    words a record, ``key`` names it in the evidence of the findings told. The settling pass
    and the note of eval mode, gradless and stepless steps and a zero rate are these two
    methods (``loop_mistakes.py``).
    """

    seen: Callable[[Any], Any]
    sentence: Callable[[Any], str]
    key: str

    def settle(self, findings: list[Finding], trace: Any) -> list[Finding]:
        """``findings`` with every alarm told the mistake by :func:`told_alarms`, its record
        in their evidence under ``key``, without remedies; unchanged where it is not seen."""
        seen = self.seen(trace)
        if seen is None:
            return findings
        return told_alarms(findings, self.sentence(seen), **{self.key: seen})

    def note(self, findings: Sequence[Finding], trace: Any) -> str | None:
        """The mistake as a note of the diagnosis where no alarm carries it (:meth:`settle`
        tells every alarm); None where one does, or where it is not seen."""
        seen = self.seen(trace)
        return untold_note(findings, None if seen is None else self.sentence(seen))


def untold_note(findings: Sequence[Finding], sentence: str | None) -> str | None:
    """``sentence`` as a note of the diagnosis where no alarm of ``findings`` carries it
    (:func:`told_alarms` tells every alarm); None where one does, or with no sentence."""
    if sentence is None or any(is_alarm(f) for f in findings):
        return None
    return f"{sentence}."


class Diagnosis(list[Finding]):
    """What :func:`~gradwatch.diagnosis.diagnose` returns: the findings, most severe first.

    A plain ``list`` of :class:`Finding` in every way that matters to existing code (it
    compares equal to a list with the same findings, iterates, indexes, pickles and copies
    like one, and ``repr`` is the list's), plus a verdict, a text :meth:`summary` (what
    ``print`` and the IPython shell show) and a card in Jupyter (``_repr_html_``) with the
    gradient along depth drawn as a sparkline.

    Attributes:
        profile: The run's gradient RMS per layer (median over its steps), drawn by the
            card; None for a trace without gradients or a diagnosis built by hand.
        run: The run's name (its directory's name), or None.
        notes: Sentences about the training loop that no finding carries (a model trained
            in eval mode with no rule at warning or above), shown after the findings.

    Example:
        >>> d = Diagnosis([])
        >>> d == [], d.verdict
        (True, 'No problem found: no rule fired.')
        >>> Diagnosis([], notes=("The model trained in eval mode.",)).verdict
        'No rule fired, but: The model trained in eval mode.'
    """

    profile: DepthProfile | None
    run: str | None
    notes: tuple[str, ...]

    def __init__(
        self,
        findings: Iterable[Finding] = (),
        *,
        profile: DepthProfile | None = None,
        run: str | None = None,
        notes: Iterable[str] = (),
    ) -> None:
        super().__init__(findings)
        self.profile = profile
        self.run = run
        self.notes = tuple(notes)

    @property
    def worst(self) -> str:
        """The highest severity among the findings, or ``"ok"`` when there is none."""
        if not self:
            return "ok"
        return max((f.severity for f in self), key=lambda s: SEVERITY_RANK.get(s, -1))

    @property
    def _notes_after_verdict(self) -> tuple[str, ...]:
        # With no finding the verdict already says the first note.
        return self.notes[0 if self else 1 :]

    @property
    def verdict(self) -> str:
        """One sentence: the most severe finding, or that no rule fired (and the first note)."""
        if not self:
            if self.notes:
                return f"No rule fired, but: {self.notes[0]}"
            return "No problem found: no rule fired."
        first = max(self, key=lambda f: SEVERITY_RANK.get(f.severity, -1))
        word = {"critical": "Critical", "warning": "Warning", "info": "Note"}.get(
            first.severity, first.severity
        )
        return f"{word} — {first.message}"

    @property
    def headline(self) -> str:
        """The verdict in a few words: the worst finding's title and how many follow.

        Rule messages open with their title (``"Vanishing gradient: ..."``); the card shows
        this above the findings so the worst message is not printed twice.
        """
        if not self:
            return self.verdict
        first = max(self, key=lambda f: SEVERITY_RANK.get(f.severity, -1))
        word = {"critical": "Critical", "warning": "Warning", "info": "Note"}.get(
            first.severity, first.severity
        )
        head, sep, _ = first.message.partition(":")
        title = head if sep and len(head) <= 60 else first.rule.replace("_", " ")
        more = len(self) - 1
        tail = f", and {more} more finding{'s' if more != 1 else ''}" if more else ""
        return f"{word} — {title}{tail}."

    def counts(self) -> dict[str, int]:
        """Number of findings per severity, most severe first (only those present)."""
        out: dict[str, int] = {}
        for sev in sorted(SEVERITY_RANK, key=lambda s: -SEVERITY_RANK[s]):
            n = sum(1 for f in self if f.severity == sev)
            if n:
                out[sev] = n
        return out

    def summary(self) -> str:
        """A plain-text summary: the verdict, then one line per finding.

        Example:
            >>> print(Diagnosis([]).summary())
            Diagnosis: No problem found: no rule fired.
        """
        about = f" of {self.run}" if self.run else ""
        counts = ", ".join(f"{n} {sev}" for sev, n in self.counts().items())
        head = f"Diagnosis{about}: {self.verdict}"
        if self:
            head += f" ({len(self)} finding{'s' if len(self) != 1 else ''}: {counts})"
        lines = [head]
        for f in self:
            layers = ", ".join(f.shown_layers[:4]) + (" …" if len(f.layers) > 4 else "")
            steps = f"steps {f.steps[0]}-{f.steps[1]}" if f.steps else "whole run"
            lines.append(f"  {f.severity:<8} {f.rule:<22} {layers or '-'} ({steps})")
        lines += [f"  note: {n}" for n in self._notes_after_verdict]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """IPython's text view (terminal, and Jupyter's text/plain): the summary."""
        p.text("Diagnosis(...)" if cycle else self.summary())

    def to_json(self) -> list[dict[str, Any]]:
        """The findings as JSON-ready dicts (``Finding.to_json``), most severe first."""
        return [f.to_json() for f in self]

    def _highlight(self) -> list[int]:
        """Profile columns of the layers the most severe finding names."""
        if self.profile is None or not self:
            return []
        first = max(self, key=lambda f: SEVERITY_RANK.get(f.severity, -1))
        where = {name: i for i, name in enumerate(self.profile.names)}
        return [where[name] for name in first.layers if name in where]

    def _repr_html_(self) -> str:
        """A compact card for Jupyter: verdict, gradient sparkline, findings with severity."""
        worst = self.worst
        about = f" of {esc(self.run)}" if self.run else ""
        counts = " ".join(badge(f"{n} {sev}", sev) for sev, n in self.counts().items())
        title = (counts or badge("ok", "ok")) + f"gradwatch diagnosis{about}"
        body = [f'<div style="font-weight:600">{esc(self.headline)}</div>']
        body.append(sparkline_block(self.profile, self._highlight(), worst))
        limit = 12
        for f in self[:limit]:
            body.append(
                '<div style="border-top:1px solid #e4e4e4;margin-top:4px;padding-top:3px">'
                f"{badge(f.severity, f.severity)}<code>{esc(f.rule)}</code>{f._html_body()}</div>"
            )
        if len(self) > limit:
            body.append(muted(f"and {len(self) - limit} more findings (print the diagnosis)"))
        for note in self._notes_after_verdict:
            body.append(f'<div style="margin-top:4px">{badge("note", "info")}{esc(note)}</div>')
        return card(title, "".join(body), worst)
