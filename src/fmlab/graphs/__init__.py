"""Graphs: graphon estimation and the W2PGNN feasibility score (:mod:`fmlab.graphs.graphon`), and the
graph pre-training objectives (:mod:`fmlab.graphs.objectives`).

The TU data layer is :mod:`fmlab.data.graphs`; the GIN encoder is :mod:`fmlab.models.gin`; the
workflows behind ``fmlab graph`` are in :mod:`fmlab.experiments.graph`.
"""
