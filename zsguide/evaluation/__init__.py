"""Evaluation: metrics, prediction writers, reports and figures."""
