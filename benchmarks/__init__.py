"""Benchmarks for conversation-expiry against a naive Go port and the usual alternatives.

Run ``python benchmarks/run.py`` (or ``--quick``); see ``run.py`` for what is measured and how.
"""
