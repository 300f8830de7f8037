"""settle_small_steps: a plateau whose every layer's steps were tiny names the rate first."""

from __future__ import annotations

from typing import Any

import pytest

from gradwatch.diagnosis._common import hints
from gradwatch.diagnosis.finding import Finding
from gradwatch.diagnosis.small_steps import settle_small_steps


def _plateau(top: float, *, windows: int = 20, plateau_windows: int = 20) -> Finding:
    evidence: dict[str, Any] = {
        "windows": windows,
        "plateau_windows": plateau_windows,
        "plateau_from_step": 0 if plateau_windows == windows else 40,
        "plateau_loss": 0.6959,
        "median_update_ratio": top / 2,
        "tiny_update_ratio": 1e-4,
        "top_update_ratio": top,
        "top_update_layer": "L5 encoder.value",
    }
    return Finding("loss_plateau", "warning", (), (0, 190), evidence, "Loss plateau: ...")


def _vanishing(**evidence: Any) -> Finding:
    remedies = hints(("lr_warmup", "w"), ("residual", "r"), ("init_he", "i"))
    return Finding(
        "vanishing_gradient", "warning", ("fc",), (0, 190), dict(evidence),
        "Vanishing gradient: ...", remedies,
    )  # fmt: skip


def test_every_layer_tiny_names_the_rate_in_every_alarm() -> None:
    """Even the layer that moves most under 1e-4: the plateau names the rate, the vanishing
    gradient is told to raise it first; both get raise_lr first, and the remedies that lower
    the rate go."""
    vanishing, plateau = settle_small_steps([_vanishing(), _plateau(4.1e-6)])
    assert plateau.evidence["cause"] == "tiny_steps_everywhere"
    assert "L5 encoder.value, moves a median 4.1e-06 of its norm" in plateau.message
    assert "The other findings (vanishing_gradient)" in plateau.message
    assert [h.id for h in plateau.remedies] == ["raise_lr"]
    assert vanishing.message.startswith("Vanishing gradient: ... Every layer's steps are tiny")
    assert "so raise the rate (raise_lr) before trying the others" in vanishing.message
    assert [h.id for h in vanishing.remedies] == ["raise_lr", "residual", "init_he"]
    assert vanishing.evidence["tiny_steps_everywhere"] is True


@pytest.mark.parametrize(
    ("plateau", "other"),
    [
        # The head moves 0.017 (HF EfficientNet at its N(0, 0.02) norm gains): a lost
        # gradient, not the rate.
        (_plateau(0.017), _vanishing()),
        # The loss learned first: small steps may be a model near its optimum.
        (_plateau(4e-6, plateau_windows=16), _vanishing()),
        # Steps too large elsewhere: the other end of the rate.
        (_plateau(4e-6), _vanishing(high_update_ratio={"fc": 2.0})),
        # A schedule took the rate to nothing: symptoms names that cause.
        (_plateau(4e-6), _vanishing(stalled_by="learning_rate")),
    ],
)
def test_left_as_it_was(plateau: Finding, other: Finding) -> None:
    assert settle_small_steps([other, plateau]) == [other, plateau]


def test_a_plateau_alone_is_left_to_symptoms() -> None:
    plateau = _plateau(4e-6)
    assert settle_small_steps([plateau]) == [plateau]
