"""Retrieval metrics, baselines and reports for pipeline/eval.py."""
