"""Story continuation pieces: styled stories, VQ-VAE straight-through, the transformer's
causality and gate-0 retro-fit, and what prompt-tuning trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.data.attributes import colour_names, digit_attributes
from fmlab.errors import ConfigError, DataError
from fmlab.story.data import STORY_COLOURS, frame_captions, render_stories, style_frames
from fmlab.story.objective import StoryObjective, prepare_adaptation
from fmlab.story.transformer import StoryTransformer
from fmlab.story.vqvae import VQVAE, VQVAEObjective


def _digits(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):  # a vertical bar of random place and length: a "digit"
        c, top = rng.integers(8, 20), rng.integers(3, 8)
        x[i, top:top + 14, c - 1:c + 2] = 255
    return x, np.arange(n) % 10


def test_stories_keep_a_measurable_style_across_frames():
    x, y = _digits()
    s = render_stories(x, y, 12, seed=1, frames=4)
    assert s["frames"].shape == (12, 4, 28, 28, 3)
    names = colour_names(s["frames"].reshape(-1, 28, 28, 3))
    palette = {"red": "red", "green": "green", "blue": "blue", "yellow": "yellow", "cyan": "cyan",
               "magenta": "purple"}
    want = [palette[STORY_COLOURS[c]] for c in np.repeat(s["colour"], 4)]
    assert names == want
    grey = s["frames"].max(-1).reshape(12, 4, 28, 28)
    thick = digit_attributes(grey.reshape(-1, 28, 28))["thickness"].reshape(12, 4)
    order = np.argsort(s["thickness"], kind="stable")
    assert np.all(np.diff(thick[order].mean(1)[np.r_[0, -1]]) >= 0)  # thick stories measure thicker
    assert frame_captions(np.array([3, 0])) == ["then a three", "then a zero"]


def test_style_frames_thin_medium_thick_nest():
    x, _ = _digits(3)
    f = [style_frames(x[:1], np.array([0]), np.array([t]))[0, ..., 0] > 0 for t in range(3)]
    assert f[0].sum() < f[1].sum() < f[2].sum() and np.all(f[1] <= f[2]) and np.all(f[0] <= f[1])


def test_vqvae_straight_through_reaches_the_encoder_and_codes_round_trip():
    torch.manual_seed(0)
    vq = VQVAE(channels=3, codes=16, dim=8, ch=8)
    x = torch.rand(4, 3, 28, 28) * 2 - 1
    loss, logs = VQVAEObjective(vq)({"images": x})
    loss.backward()
    assert vq.encoder[0].weight.grad.abs().sum() > 0 and 0 < logs["codes_used"] <= 1
    idx = vq.encode(x)
    with torch.no_grad():
        x_hat, _, idx2 = vq(x)
        torch.testing.assert_close(vq.decode(idx), x_hat)  # the decoder sees exactly e_k
    assert torch.equal(idx, idx2)
    with pytest.raises(DataError, match="multiples of 4"):
        vq.encode(torch.zeros(1, 3, 30, 30))


def _model(cross: bool = False, prompts: int = 2) -> StoryTransformer:
    torch.manual_seed(0)
    return StoryTransformer(codes=16, tokens=9, e_dim=5, d=16, layers=2, heads=2, prompts=prompts,
                            cross=cross).eval()


def test_transformer_is_causal():
    m = _model()
    codes, cap = torch.randint(0, 16, (2, 9)), torch.randn(2, 5)
    other = codes.clone()
    other[:, 5:] = (other[:, 5:] + 1) % 16
    # logits at position i read tokens < i: changing tokens 5.. leaves positions 0..5 unchanged
    torch.testing.assert_close(m(codes, cap)[:, :6], m(other, cap)[:, :6])
    assert not torch.allclose(m(codes, cap)[:, 6:], m(other, cap)[:, 6:])


def test_cross_attention_retrofit_starts_as_the_pretrained_model():
    m = _model()
    codes, cap, src = torch.randint(0, 16, (2, 9)), torch.randn(2, 5), torch.randint(0, 16, (2, 9))
    before = m(codes, cap)
    prepare_adaptation(m, "cross_full")
    torch.testing.assert_close(m(codes, cap, src), before)  # gates at 0
    for b in m.blocks:
        b.gate.data.fill_(0.5)
    assert not torch.allclose(m(codes, cap, src), before)


def test_prompt_tuning_trains_only_prompts_and_cross_attention():
    m = prepare_adaptation(_model(), "cross_prompt")
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert "prompts" in trainable and "src_pos" in trainable
    assert all(n in ("prompts", "src_pos") or ".cross." in n or ".ln_x." in n or n.endswith(".gate")
               for n in trainable)
    assert "head.weight" not in trainable and "blocks.0.attn.in_proj_weight" not in trainable
    obj = StoryObjective(m)
    loss, _ = obj({"codes": torch.randint(0, 16, (3, 9)), "caption_emb": torch.randn(3, 5),
                   "source_codes": torch.randint(0, 16, (3, 9))})
    loss.backward()
    assert m.head.weight.grad is None and m.prompts.grad is not None
    with pytest.raises(ConfigError, match="story.method: 'lora'"):
        prepare_adaptation(_model(), "lora")


def test_sampling_is_seeded_and_in_range():
    m = _model(cross=True)
    cap, src = torch.randn(3, 5), torch.randint(0, 16, (3, 9))
    a = m.sample(cap, src, generator=torch.Generator().manual_seed(0), top_k=4)
    b = m.sample(cap, src, generator=torch.Generator().manual_seed(0), top_k=4)
    assert torch.equal(a, b) and a.shape == (3, 9) and int(a.max()) < 16
