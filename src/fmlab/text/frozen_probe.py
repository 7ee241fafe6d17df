"""Linear probe on a frozen text encoder: what its features hold, without fine-tuning.

Why beside ``fmlab text finetune``: a tiny encoder pre-trained for a few hundred steps sits in the
MLM plateau, and fine-tuning it on a few hundred records often never leaves the majority class
(docs/results/text), so fine-tuning alone compares nothing. The probe fits a multinomial logistic
regression (:class:`fmlab.adapt.linear.LinearProbe`, its C chosen on validation data drawn from
train) to the encoder's mean-pooled last hidden states — deterministic, and minutes cheaper.

Records: the same seeded train subset (``limit``) and test subset (``max_test``) as
``fmlab text finetune`` with ``data.limit`` / ``data.max_test``, so the two protocols compare.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["mean_pooled_features", "probe_text_task"]


@torch.no_grad()
def mean_pooled_features(model: Any, tokenizer: Any, texts: list[str], max_length: int,
                         batch: int = 128) -> torch.Tensor:
    """(N, hidden) mean over the non-pad tokens (specials included) of the last hidden state."""
    model.eval()
    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i:i + batch], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        out.append((h * m).sum(1) / m.sum(1).clamp_min(1.0))
    return torch.cat(out)


def probe_text_task(model_spec: str, task: str, *, seed: int, limit: int | None,
                    max_test: int | None, max_length: int = 64, val_fraction: float = 0.1,
                    data_root: str | None = None) -> dict[str, Any]:
    """Frozen features of ``model_spec`` (``RUN_DIR/model`` or ``random:RUN_DIR/model``) on
    ``task``, a linear probe with C chosen on a seeded validation split of train, test scored.

    Returns:
        ``{"accuracy", "macro_f1", "val_accuracy", "C", "n_train", "n_val", "n_test",
        "test_split_hash", "train_split_hash"}``.
    """
    from fmlab.adapt.linear import LinearProbe
    from fmlab.data.text import load_text, validation_split
    from fmlab.text.classifier import load_backbone
    from fmlab.text.finetune import macro_f1

    bb = load_backbone(model_spec, init_seed=seed)
    train = load_text(task, "train", data_root=data_root, limit=limit)
    test = load_text(task, "test", data_root=data_root, limit=max_test)
    torch.manual_seed(seed)
    X = mean_pooled_features(bb.model, bb.tokenizer, list(train.texts), max_length)
    Xt = mean_pooled_features(bb.model, bb.tokenizer, list(test.texts), max_length)
    y, yt = np.asarray(train.labels), np.asarray(test.labels)
    tr, va = validation_split(len(y), val_fraction, seed, labels=list(y))
    mu, sd = X[tr].mean(0), X[tr].std(0).clamp_min(1e-6)  # standardise on the training part
    X, Xt = (X - mu) / sd, (Xt - mu) / sd
    probe = LinearProbe(C=None).fit(X[tr].numpy(), y[tr], X[va].numpy(), y[va])
    pred = probe.predict(Xt.numpy())
    return {"accuracy": float((pred == yt).mean()), "macro_f1": macro_f1(yt, pred),
            "val_accuracy": float((probe.predict(X[va].numpy()) == y[va]).mean()),
            "C": float(probe.hyperparameters_["C"]), "n_train": len(tr), "n_val": len(va),
            "n_test": len(yt), "test_split_hash": test.split_hash,
            "train_split_hash": train.split_hash}
