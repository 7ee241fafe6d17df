"""Self-critical gradient sign, CLIP-agg target against its formula, reward mixing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fmlab.caption import clip_agg_target, mixed_reward, self_critical_loss, semantic_reward
from fmlab.errors import ConfigError, DataError


def _policy_grad(reward: float, baseline: float) -> torch.Tensor:
    logits = torch.zeros(1, 3, 5, requires_grad=True)          # (B, T, vocab)
    tokens = torch.tensor([[1, 4, 2]])
    lp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    self_critical_loss(lp, torch.ones(1, 3), torch.tensor([reward]), torch.tensor([baseline])).backward()
    return logits.grad[0].gather(-1, tokens[0, :, None])[:, 0]   # d loss / d logit of each sampled token


def test_a_sample_better_than_greedy_is_made_more_likely():
    assert (_policy_grad(1.0, 0.2) < 0).all()     # gradient descent raises the sampled tokens' logits
    assert (_policy_grad(0.1, 0.6) > 0).all()     # worse than greedy: lowered
    assert torch.equal(_policy_grad(0.5, 0.5), torch.zeros(3))


def test_padding_does_not_count_and_length_normalisation():
    lp = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    r, b = torch.tensor([2.0]), torch.tensor([1.0])
    want = -(torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.25)))
    assert torch.allclose(self_critical_loss(lp, mask, r, b), want)
    assert torch.allclose(self_critical_loss(lp, mask, r, b, normalise_length=True), want / 2)
    with pytest.raises(DataError, match="same"):
        self_critical_loss(lp, mask[:, :2], r, b)


def test_clip_agg_matches_the_formula_and_its_limits():
    g = torch.Generator().manual_seed(0)
    img, corpus = torch.randn(4, 8, generator=g), torch.randn(20, 8, generator=g)
    cos = F.normalize(img, dim=-1) @ F.normalize(corpus, dim=-1).T
    want = torch.softmax(cos / 0.1, dim=1) @ corpus                # all N sentences
    assert torch.allclose(clip_agg_target(img, corpus, tau=0.1), want, atol=1e-5)
    nearest = corpus[cos.argmax(dim=1)]
    assert torch.allclose(clip_agg_target(img, corpus, tau=1e-4, top_k=5), nearest, atol=1e-4)
    top3 = cos.topk(3, dim=1).indices
    assert torch.allclose(clip_agg_target(img, corpus, tau=1e6, top_k=3), corpus[top3].mean(1), atol=1e-4)


def test_semantic_and_mixed_rewards():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(semantic_reward(a, torch.tensor([[2.0, 0.0], [1.0, 0.0]])), torch.tensor([1.0, 0.0]))
    assert torch.allclose(mixed_reward(torch.tensor([1.0]), torch.tensor([0.0]), 0.25), torch.tensor([0.25]))
    with pytest.raises(ConfigError, match="naturalness"):
        mixed_reward(torch.tensor([1.0]), None, 0.5)
