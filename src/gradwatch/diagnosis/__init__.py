"""Diagnosis: open, tested rules that read a Trace and return Findings."""

from .finding import (
    ACTIVATION_REMEDY_IDS,
    REMEDY_IDS,
    RULE_IDS,
    SEVERITY_RANK,
    Finding,
    RemedyHint,
    Severity,
)

__all__ = [
    "ACTIVATION_REMEDY_IDS",
    "REMEDY_IDS",
    "RULE_IDS",
    "SEVERITY_RANK",
    "Finding",
    "RemedyHint",
    "Severity",
]
