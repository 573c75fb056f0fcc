"""The training script's selection machinery: cross-validation folds are a hash of the prompt,
out-of-fold scores never come from a model that saw the row, and the default threshold is the
fewest strong calls that reach the quality target (so the test split is never needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
from scipy import sparse

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _trainer() -> ModuleType:
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location("train_router", SCRIPTS / "train_router.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_router = _trainer()


def test_folds_are_a_stable_hash_of_the_prompt_and_roughly_balanced() -> None:
    prompts = [f"Question {i}: how many apples does Ann have?" for i in range(2000)]
    folds = [train_router.fold_of(p) for p in prompts]
    assert folds == [train_router.fold_of(p) for p in prompts]
    counts = np.bincount(folds, minlength=train_router.FOLDS)
    assert len(counts) == train_router.FOLDS
    expected = len(prompts) / train_router.FOLDS
    assert all(0.8 * expected < c < 1.2 * expected for c in counts)


def test_out_of_fold_scores_ignore_each_rows_own_label() -> None:
    rng = np.random.default_rng(0)
    x = sparse.csr_matrix(rng.normal(size=(300, 8)))
    y = (x.toarray()[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    folds = np.arange(300) % train_router.FOLDS
    scores = train_router.out_of_fold(x, y, folds, 1.0)
    flipped = y.copy()
    flipped[folds == 2] ^= 1  # fold 2's labels change: only the other folds' scores may move
    again = train_router.out_of_fold(x, flipped, folds, 1.0)
    assert np.array_equal(scores[folds == 2], again[folds == 2])
    assert not np.array_equal(scores[folds != 2], again[folds != 2])


def test_threshold_sends_the_fewest_top_scored_prompts_that_reach_the_target() -> None:
    # Five prompts: the cheap model gets 2 right, the strong one 4; 95 % of 0.8 = 0.76.
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    cheap = np.array([False, False, True, True, False])
    strong = np.array([True, True, True, True, False])
    threshold = train_router.threshold_for_quality(scores, cheap, strong, 0.95)
    up = scores > threshold
    accuracy = np.where(up, strong, cheap).mean()
    assert accuracy >= 0.95 * strong.mean()
    assert up.sum() == 2  # sending only the top one would give 0.6
    assert train_router.cpt(scores, cheap, strong) == 0.4
