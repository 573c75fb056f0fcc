"""skinflint: a cost-aware inference sidecar for LLM applications."""

from skinflint._native import __version__

__all__ = ["__version__"]
