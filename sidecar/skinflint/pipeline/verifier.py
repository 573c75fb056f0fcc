"""The answer verifier at run time: P(a cheap answer is wrong), for the cascade check
``verifier``.

``AnswerVerifier.load()`` reads ``skinflint/data/verifier_model.json`` (written by
``scripts/train_verifier.py``) once per process (the ``App`` holds it). ``score`` extracts the
features of (question, answer) (``verifier_features``), standardizes them with the training
means and scales, and returns the logistic of the dot product: a few dozen floats, no numpy.

What it was trained on matters for where it is used: GSM8K math word problems and Mixtral-8x7B's
few-shot answers (steps with ``<<a*b=c>>`` and a final ``#### N``), labelled wrong when the
final number is not the gold integer. It checks arithmetic, the final answer's form and
hedging; on prose, code or extraction tasks its score means little, which is why the check is
opt-in per feature (``cascade_checks``), not a default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from skinflint.pipeline.router_model import sigmoid
from skinflint.pipeline.verifier_features import FEATURES, Check, analyse, extract

MODEL_FILE = "verifier_model.json"


class VerifierModelError(Exception):
    """The shipped verifier model is missing or was trained on other features."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A verifier score and the recomputed steps that failed (for the route reason)."""

    probability: float
    wrong_steps: tuple[Check, ...]


class AnswerVerifier:
    """Logistic regression over ``verifier_features.FEATURES`` (see the module docstring)."""

    def __init__(
        self,
        mean: list[float],
        scale: list[float],
        coef: list[float],
        intercept: float,
        default_threshold: float,
    ) -> None:
        if not len(mean) == len(scale) == len(coef) == len(FEATURES):
            raise VerifierModelError(
                f"expected {len(FEATURES)} means, scales and weights, got "
                f"{len(mean)}, {len(scale)} and {len(coef)}"
            )
        if any(s <= 0 for s in scale):
            raise VerifierModelError("every feature scale must be positive")
        # Folded once: logit = intercept' + sum(w_i * x_i).
        self._weights = [w / s for w, s in zip(coef, scale, strict=True)]
        self._intercept = intercept - sum(
            w * m / s for w, m, s in zip(coef, mean, scale, strict=True)
        )
        self.default_threshold = default_threshold

    @classmethod
    def load(cls) -> AnswerVerifier:
        """The model shipped in the package."""
        path = resources.files("skinflint") / "data" / MODEL_FILE
        meta = json.loads(path.read_text(encoding="utf-8"))
        if tuple(meta["features"]) != FEATURES:
            raise VerifierModelError(
                f"{MODEL_FILE} was trained on other features than verifier_features.FEATURES; "
                "rerun scripts/train_verifier.py"
            )
        return cls(
            [float(v) for v in meta["mean"]],
            [float(v) for v in meta["scale"]],
            [float(v) for v in meta["coef"]],
            float(meta["intercept"]),
            float(meta["default_threshold"]),
        )

    def logit(self, features: list[float]) -> float:
        return self._intercept + sum(w * x for w, x in zip(self._weights, features, strict=True))

    def probability(self, question: str, answer: str) -> float:
        return sigmoid(self.logit(extract(question, answer)))

    def score(self, question: str, answer: str) -> Verdict:
        features, wrong = analyse(question, answer)
        return Verdict(sigmoid(self.logit(features)), tuple(wrong))


__all__ = ["AnswerVerifier", "Verdict", "VerifierModelError"]
