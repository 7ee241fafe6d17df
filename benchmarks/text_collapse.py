"""Issue 18 diagnostic: are the pre-trained encoders' sentence features collapsed?

For each encoder (``RUN/model`` folders, or ``random:RUN/model`` for the same architecture at
random initialisation), the [CLS] and mean-pooled last hidden states of N SST-2 test sentences:
mean pairwise cosine similarity (1 = every sentence maps to the same direction) and the share of
feature variance across sentences (trace of the covariance / mean squared norm; 0 = one point).

    python benchmarks/text_collapse.py --n 300 runs/text/b1000/pt/mlm_s0/model \
        runs/text/b1000/pt/electra_s0/model random:runs/text/b1000/pt/mlm_s0/model
"""

from __future__ import annotations

import argparse
import json

import torch


def load(ref: str):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = ref.removeprefix("random:")
    tok = AutoTokenizer.from_pretrained(path)
    if ref.startswith("random:"):
        torch.manual_seed(1)
        return tok, AutoModel.from_config(AutoConfig.from_pretrained(path))
    return tok, AutoModel.from_pretrained(path)


def stats(h: torch.Tensor) -> dict[str, float]:
    z = torch.nn.functional.normalize(h, dim=-1)
    n = len(h)
    cos = (z @ z.T).sum().sub(n).div(n * (n - 1))
    var_share = h.var(0).sum() / h.pow(2).sum(1).mean()
    return {"mean_pairwise_cos": round(float(cos), 4), "variance_share": round(float(var_share), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    from fmlab.data.text import load_text

    texts = load_text("sst2", "test").texts[: args.n]
    torch.set_num_threads(1)
    out = {}
    for ref in args.models:
        tok, model = load(ref)
        model.eval()
        enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        out[ref] = {"cls": stats(h[:, 0]), "mean": stats((h * m).sum(1) / m.sum(1))}
        print(ref, json.dumps(out[ref]), flush=True)


if __name__ == "__main__":
    main()
