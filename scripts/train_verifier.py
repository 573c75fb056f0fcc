"""Train the answer verifier (cascade check ``verifier``) and write the model the package ships.

    python scripts/train_verifier.py               # writes skinflint/data/verifier_model.json
    python scripts/train_verifier.py --out /tmp/x  # somewhere else (the reproduction test)
    python scripts/train_verifier.py --sweep       # the cross-validation table, writes nothing

Development only (numpy and scikit-learn are dev extras; the sidecar scores with a pure-Python
dot product, ``skinflint.pipeline.verifier``). Deterministic: the split and the folds are
hashes of the prompt (``routing_data.split_of``, ``train_router.fold_of``, the router's own),
the solver is liblinear with a fixed seed.

Model: L2 logistic regression over the standardized features of
``skinflint.pipeline.verifier_features`` (question + Mixtral-8x7B's recorded answer), predicting
P(the cheap answer is wrong) = P(Mixtral wrong), trained on the GSM8K *train* split of the
router (70 % by SHA-256 of the prompt; contaminated prompts dropped). Chosen by 5-fold
cross-validation inside the train split only, so the test split never influences anything:

* C among ``SWEEP`` by the lowest out-of-fold cascade CPT(95 %) (the share of requests
  escalated to GPT-4 that reaches 95 % of GPT-4's accuracy, escalated requests scored with
  GPT-4's correctness and the rest with Mixtral's), the first of equals;
* the default threshold: the score at which the pooled out-of-fold scores first reach 95 %
  of GPT-4's accuracy on the train split.

The shipped model is then fitted on the whole train split.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routing_data import ROOT, Row, data_dir, file_digests, load_rows
from train_router import FOLDS, QUALITY_TARGET, SEED, cpt, fold_of, threshold_for_quality

from skinflint.pipeline.verifier_features import FEATURES, extract

#: The regularization strengths compared by cross-validation (on standardized features).
SWEEP = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
OUT = ROOT / "sidecar" / "skinflint" / "data"
MODEL_FILE = "verifier_model.json"
#: Bootstrap resamples of the out-of-fold scores for the CV interval (seeded).
BOOTSTRAP = 200
DIGITS = 8


def gsm8k_train(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.dataset == "gsm8k" and r.split == "train"]


def features(rows: list[Row]) -> np.ndarray:
    return np.array([extract(r.prompt, r.cheap_response) for r in rows], dtype=np.float64)


def standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales (1 for a constant column, so it scores 0)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


def fit(z: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
    model = LogisticRegression(C=c, solver="liblinear", tol=1e-8, random_state=SEED)
    model.fit(z, y)
    return model


def out_of_fold(x: np.ndarray, y: np.ndarray, folds: np.ndarray, c: float) -> np.ndarray:
    """Each row's score from a model (standardization included) fitted on the other folds."""
    scores = np.zeros(len(y))
    for k in range(FOLDS):
        held = folds == k
        mean, scale = standardize(x[~held])
        model = fit((x[~held] - mean) / scale, y[~held], c)
        scores[held] = model.predict_proba((x[held] - mean) / scale)[:, 1]
    return scores


def bootstrap_cpt(scores: np.ndarray, cheap: np.ndarray, strong: np.ndarray) -> tuple[float, float]:
    """5th and 95th percentiles of CPT(95 %) over resamples of the rows (seeded)."""
    rng = random.Random(0)
    n = len(scores)
    values = []
    for _ in range(BOOTSTRAP):
        pick = np.array([rng.randrange(n) for _ in range(n)])
        values.append(cpt(scores[pick], cheap[pick], strong[pick]))
    values.sort()
    return values[int(0.05 * (BOOTSTRAP - 1))], values[int(0.95 * (BOOTSTRAP - 1))]


def cross_validate(rows: list[Row]) -> dict:
    """Every C of ``SWEEP`` by out-of-fold CPT(95 %) and AUC; the chosen C, its default
    threshold and the CV figures of the choice."""
    x = features(rows)
    y = np.array([not r.cheap_ok for r in rows], dtype=int)
    cheap = np.array([r.cheap_ok for r in rows])
    strong = np.array([r.strong_ok for r in rows])
    folds = np.array([fold_of(r.prompt) for r in rows])
    table = []
    best: tuple[float, float, np.ndarray] | None = None
    for c in SWEEP:
        scores = out_of_fold(x, y, folds, c)
        share = cpt(scores, cheap, strong)
        table.append({"C": c, "cpt": round(share, 6), "auc": round(roc_auc_score(y, scores), 6)})
        if best is None or share < best[1]:
            best = (c, share, scores)
    assert best is not None
    c, share, scores = best
    threshold = threshold_for_quality(scores, cheap, strong, QUALITY_TARGET)
    low, high = bootstrap_cpt(scores, cheap, strong)
    return {
        "x": x,
        "y": y,
        "C": c,
        "threshold": round(threshold, 6),
        "sweep": table,
        "cpt": round(share, 6),
        "cpt_interval": [round(low, 6), round(high, 6)],
        "random_cpt": round(
            float((QUALITY_TARGET * strong.mean() - cheap.mean()) / (strong.mean() - cheap.mean())),
            6,
        ),
    }


def train(rows: list[Row], src: Path) -> dict:
    """The model file's content from the GSM8K train split of ``rows``."""
    train_rows = gsm8k_train(rows)
    cv = cross_validate(train_rows)
    x, y = cv["x"], cv["y"]
    mean, scale = standardize(x)
    model = fit((x - mean) / scale, y, cv["C"])
    return {
        "format": 1,
        "features": list(FEATURES),
        "extractor": "skinflint.pipeline.verifier_features.extract",
        "mean": [round(float(v), DIGITS) for v in mean],
        "scale": [round(float(v), DIGITS) for v in scale],
        "coef": [round(float(v), DIGITS) for v in model.coef_[0]],
        "intercept": round(float(model.intercept_[0]), DIGITS),
        "default_threshold": cv["threshold"],
        "predicts": "P(the cheap answer is wrong) = P(Mixtral-8x7B wrong) on GSM8K",
        "trainer": {
            "script": "scripts/train_verifier.py",
            "model": "L2 logistic regression on standardized features, liblinear",
            "C": cv["C"],
            "seed": SEED,
            "cv_folds": FOLDS,
            "quality_target": QUALITY_TARGET,
            "train_rows": len(train_rows),
            "data_sha256": file_digests(src, mmlu=False),
        },
        "cv": {
            "basis": "share of requests escalated (GPT-4 calls) at 95 % of GPT-4's accuracy, "
            "out of fold, GSM8K train split",
            "cpt": cv["cpt"],
            "cpt_interval_90": cv["cpt_interval"],
            "random_cpt": cv["random_cpt"],
            "sweep": cv["sweep"],
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="directory with gsm8k_responses.csv")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--sweep", action="store_true", help="print the cross-validated choice of C, write nothing"
    )
    args = parser.parse_args(argv)
    src = data_dir(args.data)
    meta = train(load_rows(src), src)
    cv = meta["cv"]
    if args.sweep:
        print("| C | out-of-fold CPT(95 %) | AUC (cheap answer wrong) |")
        print("|---|---|---|")
        for entry in cv["sweep"]:
            print(f"| {entry['C']} | {100 * entry['cpt']:.1f} % | {entry['auc']:.3f} |")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / MODEL_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    low, high = cv["cpt_interval_90"]
    print(
        f"wrote {args.out / MODEL_FILE}: C {meta['trainer']['C']}, default threshold "
        f"{meta['default_threshold']}, out-of-fold CPT(95 %) {100 * cv['cpt']:.1f} % "
        f"[{100 * low:.1f} %, {100 * high:.1f} %] (random {100 * cv['random_cpt']:.1f} %)"
    )


if __name__ == "__main__":
    main()
