"""The routing classifier at run time: shipped weights, a pure-Python sparse dot product.

``RouterModel.load()`` reads ``skinflint/data/router_model.json`` and the float32 weights it
names (checked against their SHA-256), once per process (the ``App`` holds it). ``score``
returns P(the cheap tier is not good enough) for a prompt and its request context: the
learned logit over ``router_features`` plus hand-set offsets for the context the public
training data lacks (``priors`` in the model file: the task-type hint, tools, turn depth,
short or long ``max_tokens``). Those offsets are a documented prior, not learned.

No numpy: the weights are an ``array('f')`` and a prompt touches a few hundred of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from skinflint.pipeline.router_features import Context, hashed

MODEL_FILE = "router_model.json"


class RouterModelError(Exception):
    """The shipped model files are missing or do not match each other."""


@dataclass(frozen=True, slots=True)
class Score:
    """A classifier verdict: the probability and the parts of the logit, for route reasons."""

    probability: float
    learned_logit: float
    prior_logit: float


class RouterModel:
    """Logistic regression over hashed features (see the module docstring)."""

    def __init__(
        self, weights: array, bits: int, intercept: float, default_threshold: float, priors: Any
    ) -> None:
        if len(weights) != 1 << bits:
            raise RouterModelError(f"expected {1 << bits} weights, got {len(weights)}")
        self._weights = weights
        self.bits = bits
        self.intercept = intercept
        self.default_threshold = default_threshold
        self._priors: Mapping[str, Any] = priors

    @classmethod
    def load(cls) -> RouterModel:
        """The model shipped in the package."""
        data = resources.files("skinflint") / "data"
        meta = json.loads((data / MODEL_FILE).read_text(encoding="utf-8"))
        blob = (data / meta["weights_file"]).read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
            raise RouterModelError(
                f"{meta['weights_file']} does not match {MODEL_FILE}; reinstall skinflint or "
                "rerun scripts/train_router.py"
            )
        weights = array("f")
        weights.frombytes(blob)
        if sys.byteorder == "big":
            weights.byteswap()
        return cls(
            weights,
            int(meta["bits"]),
            float(meta["intercept"]),
            float(meta["default_threshold"]),
            meta.get("priors", {}),
        )

    def learned_logit(self, prompt: str) -> float:
        w = self._weights
        total = self.intercept
        for index, value in hashed(prompt, self.bits).items():
            total += w[index] * value
        return total

    def prior_logit(self, context: Context) -> float:
        p = self._priors
        offset = 0.0
        if context.task_type is not None:
            offset += float(p.get("task_type", {}).get(context.task_type, 0.0))
        if context.tools:
            offset += float(p.get("tools", 0.0))
        extra_turns = max(context.turns - 1, 0)
        offset += min(extra_turns * float(p.get("per_extra_turn", 0.0)), p.get("turns_cap", 0.0))
        if context.max_tokens is not None:
            if context.max_tokens <= int(p.get("short_output_max_tokens", 0)):
                offset += float(p.get("short_output", 0.0))
            elif context.max_tokens >= int(p.get("long_output_max_tokens", 1 << 62)):
                offset += float(p.get("long_output", 0.0))
        return offset

    def score(self, prompt: str, context: Context | None = None) -> Score:
        learned = self.learned_logit(prompt)
        prior = self.prior_logit(context) if context is not None else 0.0
        return Score(sigmoid(learned + prior), learned, prior)


def sigmoid(x: float) -> float:
    """The logistic function, without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


__all__ = ["RouterModel", "RouterModelError", "Score", "sigmoid"]
