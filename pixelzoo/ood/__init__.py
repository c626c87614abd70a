"""Likelihood-based out-of-distribution detection: scores (likelihood, likelihood ratios against a background
or local model, input complexity) and metrics (AUROC, AUPRC, FPR at 80% / 95% TPR)."""
from .metrics import fpr_at_tpr, ood_metrics
from .scores import (COMPRESSORS, complexity_score, compressed_bits, likelihood_ratio_score, likelihood_score,
                     nll_bits_per_dim)

__all__ = ["COMPRESSORS", "complexity_score", "compressed_bits", "fpr_at_tpr", "likelihood_ratio_score",
           "likelihood_score", "nll_bits_per_dim", "ood_metrics"]
