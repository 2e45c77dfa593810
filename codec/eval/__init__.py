"""Evaluation: rate–distortion measurement, classical baselines, BD-rate, reports and figures."""
