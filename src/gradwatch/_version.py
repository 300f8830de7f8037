"""The package version: a leaf module, so any part of gradwatch can read it without
importing the top-level package (which would be an upward import)."""

__version__ = "0.1.0"
