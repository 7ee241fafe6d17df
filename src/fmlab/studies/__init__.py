"""Small studies that check a paper's claim in simulation (NumPy only, seconds).

:mod:`fmlab.studies.em` — EM for Gaussian mixtures; :mod:`fmlab.studies.advantage` — the
provable advantage of unsupervised pre-training (papers.md 37): data generators, pre-train + ERM
and supervised baselines; :mod:`fmlab.studies.advantage_report` — its tables, rate fits and plots.
The command is ``fmlab study pretrain-advantage`` (:mod:`fmlab.experiments.pretrain_advantage`).
"""
