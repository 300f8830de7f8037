"""What the recorder learns about the model once: activations, residual branches, clipping,
the scale of its inputs.

``Watch`` composes one :class:`Anatomy`: at ``watch()`` the activation modules are recognised
(table, probe, ``torch.fx``); the first forward is watched for its graph and for the scale of
what it is fed (``inputs.py``); at the first step the residual branches are found and written
into the layer table; while the watch is open, the user's ``clip_grad_norm_`` calls are
observed. Each part runs once and says what it cost (``meta["structure"]["cost_ms"]``,
``meta["activations"]["cost_ms"]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from .clip_observer import ClipObserver, ClipSeen
from .inputs import InputProbe
from .layers import LayerSet
from .recognise import Recognition, describe, recognise
from .structure import Structure, StructureProbe

if TYPE_CHECKING:
    from .activations import ActivationSampler


class Anatomy:
    """The model's structure as the recorder sees it, and the hooks that find it.

    Args:
        model: The watched model.
        layers: The watched layers; their activation, branch and claim tables are filled in.
    """

    def __init__(self, model: nn.Module, layers: LayerSet) -> None:
        self._layers = layers
        names = [spec.name for spec in layers.specs]
        self.recognition: Recognition = recognise(model, set(names))
        layers.recognised = dict(self.recognition.modules)
        index = {name: i for i, name in enumerate(names)}
        layers.functional = {index[n]: fn for n, fn in self.recognition.functional.items()}
        self._probe = StructureProbe(model)
        self.inputs = InputProbe(model)
        self.structure: Structure | None = None
        self.clips = ClipObserver(
            layers.params,
            [i for i, spec in enumerate(layers.specs) for _ in spec.params],
            layers.n,
            layers.device,
        )

    def arm(self) -> None:
        """Watch the first forward's graph and inputs, and the user's clipping from now on."""
        self._probe.arm()
        self.inputs.arm()
        self.clips.open()

    def disarm(self) -> None:
        """Remove every hook and put ``clip_grad_norm_`` back."""
        self._probe.disarm()
        self.inputs.disarm()
        self.clips.close()

    def finish(self, sampler: ActivationSampler) -> None:
        """At the first step: the residual branches, and activations credited past shortcuts.

        The first forward has claimed each activation for the last layer called before it;
        an activation after ``main + shortcut`` was claimed by the shortcut's last layer when
        the shortcut runs second (torchvision's ``downsample``): it moves to the main
        branch's last layer, with the statistics the first step has gathered for it.
        """
        layers = self._layers
        names = [spec.name for spec in layers.specs]
        index = {name: i for i, name in enumerate(names)}
        # In depth order: a branch lists its layers, and picks its last one, along the forward.
        by_depth = sorted(names, key=lambda n: layers.depth[index[n]])
        structure = self._probe.analyse(by_depth)
        self.structure = structure
        layers.branch_of = {index[n]: b for n, b in structure.branch_of.items()}
        layers.no_claim = {index[n] for n in structure.shortcut_layers}
        for name, main in structure.main_end_of.items():
            old, new = index[name], index[main]
            act = layers.activation_of.get(old)
            if act is None or new in layers.activation_of:
                continue
            del layers.activation_of[old]
            layers.activation_of[new] = act
            sampler.reassign(old, new)

    def take_clip(self) -> ClipSeen | None:
        """The user's clipping of the gradients about to be recorded, if any."""
        return self.clips.take(self._layers.params)

    def meta(self) -> dict[str, Any]:
        """``meta.json`` entries: ``activations``, ``structure`` and ``model_input``."""
        out: dict[str, Any] = {
            "activations": describe(self.recognition, self._layers.unrecognised())
        }
        if self.structure is not None:
            out["structure"] = self.structure.to_meta()
        seen = self.inputs.meta()
        if seen is not None:
            out["model_input"] = seen
        return out
