"""Theory: why gradients vanish or explode, predicted and checked against measurement.

- :func:`mean_field`: the variance fixed point ``q*``, ``chi_1``, depth scales and the
  trainable depth of a deep random network (Poole et al. 2016; Schoenholz et al. 2017).
- :func:`critical_sigma_w`: the order/chaos boundary ``chi_1 = 1``.
- :func:`norm_profile`: the gradient norm along depth that a ``chi_1`` predicts.
- :func:`jacobian_spectrum`: singular values of the input-output Jacobian and dynamical
  isometry measures (Pennington et al. 2017).
- :func:`explain`: the chain rule walked layer by layer on a model and a batch, or through
  a recorded trace, with the sentence a user reads.

``sigma_w`` is always the standard-deviation multiplier: ``W ~ N(0, sigma_w^2 / fan_in)``;
``sigma_b`` the bias standard deviation, ``b ~ N(0, sigma_b^2)``. Papers often quote the
variances ``sigma_w^2`` and ``sigma_b^2``: pass their square roots (the CLI takes either,
``--sigma-w`` / ``--sigma-w2``).

Example:
    >>> from gradwatch import theory
    >>> r = theory.mean_field("tanh", sigma_w=1.5, sigma_b=0.05)  # standard deviations
    >>> r.phase
    'chaotic'
    >>> theory.mean_field("tanh", sigma_w=1.5**0.5, sigma_b=0.05**0.5).phase  # variances 1.5, 0.05
    'ordered'
"""

from .activations import ACTIVATIONS, Activation, resolve_activation
from .chain_rule import ChainRuleWalk, LayerGain, explain, explain_trace
from .meanfield import MeanFieldResult, chi_1, critical_sigma_w, mean_field, norm_profile
from .spectrum import JacobianSpectrum, jacobian_spectrum

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "ChainRuleWalk",
    "JacobianSpectrum",
    "LayerGain",
    "MeanFieldResult",
    "chi_1",
    "critical_sigma_w",
    "explain",
    "explain_trace",
    "jacobian_spectrum",
    "mean_field",
    "norm_profile",
    "resolve_activation",
]
