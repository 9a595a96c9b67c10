"""Diagnostics run before choosing a method: the gradient-noise tail index, the lower-level
conditioning, the penalty bias, and a recommendation (``htbo diagnose``)."""
from __future__ import annotations

from .conditioning import Conditioning, lanczos_extremes, lower_conditioning
from .diagnosis import MIN_SAMPLES, Diagnosis, TailReport, diagnose, penalty_bias, sample_noise
from .recommend import classify, recommend, tune_command
from .report import markdown, plot_survival, write_report
from .tail import (Estimate, block_sum_alpha, block_sum_estimate, hill_alpha, hill_estimate,
                   survival, symmetrize)

__all__ = ["diagnose", "Diagnosis", "TailReport", "MIN_SAMPLES", "sample_noise",
           "penalty_bias", "Conditioning", "lanczos_extremes", "lower_conditioning",
           "classify", "recommend", "tune_command", "markdown", "plot_survival",
           "write_report", "Estimate", "block_sum_alpha", "block_sum_estimate", "hill_alpha",
           "hill_estimate", "survival", "symmetrize"]
