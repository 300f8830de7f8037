"""Diagnosis: open, tested rules that read a Trace and return Findings."""

from .engine import diagnose
from .finding import (
    ACTIVATION_REMEDY_IDS,
    REMEDY_IDS,
    RULE_IDS,
    SEVERITY_RANK,
    Diagnosis,
    Finding,
    RemedyHint,
    Severity,
)
from .flow import DepthTrend, depth_trend
from .ranking import RankedRemedy, rank_remedies
from .rates import peak_learning_rate
from .rules import RULES
from .thresholds import Thresholds

__all__ = [
    "ACTIVATION_REMEDY_IDS",
    "REMEDY_IDS",
    "RULES",
    "RULE_IDS",
    "SEVERITY_RANK",
    "DepthTrend",
    "Diagnosis",
    "Finding",
    "RankedRemedy",
    "RemedyHint",
    "Severity",
    "Thresholds",
    "depth_trend",
    "diagnose",
    "peak_learning_rate",
    "rank_remedies",
]
