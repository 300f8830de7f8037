"""Diagnosis: open, tested rules that read a Trace and return Findings."""

from .engine import diagnose
from .finding import (
    ACTIVATION_REMEDY_IDS,
    REMEDY_IDS,
    RULE_IDS,
    SEVERITY_RANK,
    Finding,
    RemedyHint,
    Severity,
)
from .rules import RULES
from .thresholds import Thresholds

__all__ = [
    "ACTIVATION_REMEDY_IDS",
    "REMEDY_IDS",
    "RULES",
    "RULE_IDS",
    "SEVERITY_RANK",
    "Finding",
    "RemedyHint",
    "Severity",
    "Thresholds",
    "diagnose",
]
