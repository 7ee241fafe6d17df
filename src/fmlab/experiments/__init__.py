"""Workflows that compose data, models, features, estimators and the results store.

The CLI calls these; so can a notebook. Each returns plain records and writes its outputs
atomically into a run directory.
"""
