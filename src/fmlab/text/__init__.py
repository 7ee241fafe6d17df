"""fmlab.text — text pre-training, fine-tuning and evaluation (issue 18).

Tokenizers (:mod:`fmlab.text.tokenizer`), packing and padding (:mod:`fmlab.text.packing`),
models and objectives (``models``, ``objectives``), sequence-classification fine-tuning
(:mod:`fmlab.text.finetune`) and held-out evaluation (:mod:`fmlab.text.evaluate`). Data sources
are in :mod:`fmlab.data.text`.
"""
