"""CoOp: prompt shapes for each class-token position, frozen towers, a falling loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.adapt.coop import CoOp, PromptLearner
from fmlab.errors import ConfigError

NAMES = ["cat", "sports car", "aeroplane", "dog"]


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_prompt_layout_and_shapes(tiny_model, position, csc):
    tower = tiny_model.text
    pl = PromptLearner(tiny_model, NAMES, n_ctx=4, csc=csc, position=position,
                       generator=torch.Generator().manual_seed(0))
    assert pl.ctx.shape == ((4, 4, 32) if csc else (4, 32))
    seq, end = pl.prompts()
    ids, e = tower.prompt_plan([f"{n}." for n in NAMES])
    assert seq.shape == (4, ids.shape[1] + 4, 32)
    emb = tower.token_embedding(ids)
    for c in range(4):
        n = int(e[c]) - 2
        ctx = pl.ctx[c] if csc else pl.ctx
        expected = {"end": [emb[c, :1], ctx, emb[c, 1:]],
                    "front": [emb[c, :1], emb[c, 1:1 + n], ctx, emb[c, 1 + n:]],
                    "middle": [emb[c, :1], ctx[:2], emb[c, 1:1 + n], ctx[2:], emb[c, 1 + n:]]}
        torch.testing.assert_close(seq[c], torch.cat(expected[position]))
        assert int(end[c]) == int(e[c]) + 4
        # the EOS ([SEP]) embedding sits at the shifted end
        torch.testing.assert_close(seq[c, int(end[c])], emb[c, int(e[c])])
    assert pl().shape == (4, 16)


def test_zero_context_reproduces_the_plain_prompt(tiny_model):
    """With the context replaced by the words' own embeddings the learner equals encoding text."""
    pl = PromptLearner(tiny_model, NAMES, ctx_init="a photo of a")
    assert pl.n_ctx == 4
    with torch.no_grad():
        direct = tiny_model.encode_text([f"a photo of a {n}." for n in NAMES])
        torch.testing.assert_close(pl(), direct, atol=1e-5, rtol=1e-5)


def test_coop_loss_falls_and_towers_stay_frozen(tiny_model):
    g = torch.Generator().manual_seed(0)
    y = np.repeat(np.arange(4), 8)
    centres = torch.randn(4, 16, generator=g)
    X = centres[y] + 0.3 * torch.randn(32, 16, generator=g)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    est = CoOp(tiny_model, NAMES, n_ctx=4, csc=True, epochs=20, batch_size=16, lr=2.0,
               warmup_epochs=0, seed=0).fit(X, y)
    assert np.mean(est.losses_[-4:]) < 0.7 * np.mean(est.losses_[:2])
    for k, v in tiny_model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert (est.predict(X) == y).mean() > 0.5
    assert est.decision_function(X[:3]).shape == (3, 4)
    with pytest.raises(ConfigError, match="class_token_position"):
        PromptLearner(tiny_model, NAMES, position="top")
