"""Detection metrics over in-distribution and OOD score sets (OOD is the positive class; higher = more OOD),
computed with scikit-learn (``pip install 'pixelzoo[ood]'``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["ood_metrics", "fpr_at_tpr"]


def _sklearn():
    try:
        import sklearn.metrics as metrics
    except ImportError:
        raise ImportError("OOD metrics need scikit-learn: pip install 'pixelzoo[ood]' (or scikit-learn)") from None
    return metrics


def _labels_scores(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(in_scores.cpu() if isinstance(in_scores, torch.Tensor) else in_scores, dtype=np.float64).ravel()
    b = np.asarray(out_scores.cpu() if isinstance(out_scores, torch.Tensor) else out_scores, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(f"need scores of both sets, got {a.size} in-distribution and {b.size} OOD")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite")
    return np.concatenate([np.zeros(a.size), np.ones(b.size)]), np.concatenate([a, b])


def fpr_at_tpr(in_scores: Sequence[float] | torch.Tensor, out_scores: Sequence[float] | torch.Tensor,
               tpr: float) -> float:
    """Fraction of in-distribution images flagged at the loosest threshold that flags ``tpr`` of the OOD ones."""
    y, s = _labels_scores(in_scores, out_scores)
    fprs, tprs, _ = _sklearn().roc_curve(y, s, drop_intermediate=False)
    return float(fprs[np.searchsorted(tprs, tpr, side="left")])


def ood_metrics(in_scores: Sequence[float] | torch.Tensor, out_scores: Sequence[float] | torch.Tensor) -> dict:
    """``{"auroc", "auprc", "fpr80", "fpr95", "num_in", "num_out"}``: AUROC, average precision (AUPRC) with OOD
    as positives, and the false-positive rates at 80% and 95% true-positive rate."""
    metrics = _sklearn()
    y, s = _labels_scores(in_scores, out_scores)
    return {"auroc": float(metrics.roc_auc_score(y, s)), "auprc": float(metrics.average_precision_score(y, s)),
            "fpr80": fpr_at_tpr(in_scores, out_scores, 0.8), "fpr95": fpr_at_tpr(in_scores, out_scores, 0.95),
            "num_in": int((y == 0).sum()), "num_out": int((y == 1).sum())}
