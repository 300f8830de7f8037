"""Errors raised when a run directory cannot be read or written."""

from __future__ import annotations


class TraceError(Exception):
    """A run directory is missing, empty, unreadable, or from an unsupported format."""
