"""CgT-GAN pieces: the unpaired splits, the captioner's sampling path, the text discriminator and
its reward, the self-critical step through the captioner, the objective's reward arms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.caption.data import REF_TEMPLATES, build_caption_splits, digit_word_of
from fmlab.caption.models import CaptionDecoder, MiniClip, TextDiscriminator
from fmlab.caption.objectives import CgTObjective
from fmlab.caption.self_critical import self_critical_loss
from fmlab.errors import ConfigError, FmlabError

pytestmark = pytest.mark.usefixtures("one_thread")
V = 20


def _digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique random 'digits' (a bright blob whose pixel 0 encodes the row) and labels."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 12, 12), np.uint8)
    for i in range(n):
        r, c, w = rng.integers(2, 6), rng.integers(2, 6), rng.integers(2, 6)
        x[i, r:r + w, c:c + w] = rng.integers(130, 255)
    x[:, 0, 0] = np.arange(n) % 256
    x[:, 0, 1] = np.arange(n) // 256
    return x, np.arange(n) % 10


def test_splits_are_disjoint_unpaired_and_referenced():
    x, y = _digits(400, 0)
    xt, yt = _digits(30, 1)
    sizes = {"clip": 100, "images": 100, "corpus": 90, "lm": 80}
    sp = build_caption_splits(x, y, xt, yt, sizes, n_test=20, split_seed=3)
    ids = {b: {int(a) + 256 * int(b_) for a, b_ in sp.images[b][:, 0, :2]} for b in ("clip", "images")}
    assert len(ids["clip"]) == 100 and not ids["clip"] & ids["images"]
    assert len(sp.captions["corpus"]) == 90 and len(sp.captions["lm"]) == 80 and "images" not in sp.captions
    assert len(sp.references) == 20 and all(len(r) == len(REF_TEMPLATES) for r in sp.references)
    # references name the test image's digit, in phrasings no training caption uses
    assert all(digit_word_of(r[0]) == yt[i] for i, r in enumerate(sp.references))
    assert not {c.split()[0] for c in sp.captions["corpus"]} & {"an", "thin", "medium", "thick"} - {"a"}
    with pytest.raises(FmlabError, match="corpus"):
        build_caption_splits(x, y, xt, yt, {**sizes, "corpus": 0}, 20, 3)


def test_sampled_log_probs_equal_teacher_forced_log_probs():
    torch.manual_seed(0)
    dec = CaptionDecoder(V, 8, hidden=16, embed=8, max_len=7)
    feats = torch.randn(5, 8)
    ids, logp, mask = dec.sample(feats, generator=torch.Generator().manual_seed(1))
    tf_logp, tf_mask = dec.token_logp(feats, ids)
    assert torch.equal(mask, tf_mask)
    assert torch.allclose(logp, tf_logp, atol=1e-5)
    # nothing after the first EOS; specials never sampled
    assert ((ids == 2).long().cumsum(1) - (ids == 2).long() > 0).le(ids == 0).all()
    assert not ((ids == 1) | (ids == 3) | (ids == 4)).any()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_self_critical_step_through_the_captioner_moves_the_sample(sign):
    torch.manual_seed(0)
    dec = CaptionDecoder(V, 8, hidden=16, embed=8, max_len=6)
    feats = torch.randn(4, 8)
    ids, logp, mask = dec.sample(feats, generator=torch.Generator().manual_seed(0))
    before = dec.token_logp(feats, ids)[0].sum(1).detach()
    loss = self_critical_loss(logp, mask, torch.full((4,), sign), torch.zeros(4))
    loss.backward()
    with torch.no_grad():
        for p in dec.parameters():
            p -= 0.05 * p.grad
    after = dec.token_logp(feats, ids)[0].sum(1).detach()
    assert (sign * (after - before) > 0).all()  # better than greedy: likelier; worse: less likely


def test_discriminator_logits_and_reward_shapes_ignore_padding_after_eos():
    torch.manual_seed(0)
    d = TextDiscriminator(V, hidden=8, embed=4)
    ids = torch.tensor([[7, 8, 2, 0, 0], [9, 2, 0, 0, 0], [5, 6, 7, 8, 9]])
    logits, r = d(ids), d.reward(ids)
    assert logits.shape == (3,) and r.shape == (3,) and ((r > 0) & (r < 1)).all()
    assert not r.requires_grad
    junk = ids.clone()
    junk[0, 3:] = torch.tensor([11, 12])  # tokens after EOS are not part of the sentence
    assert torch.allclose(d(junk), logits)
    assert torch.allclose(r, torch.sigmoid(logits))


def _objective(lam, semantic="clip_cos", with_d=True):
    torch.manual_seed(0)
    clip = MiniClip(V, dim=8, width=4)
    dec = CaptionDecoder(V, 8, hidden=16, embed=8, max_len=6)
    disc = TextDiscriminator(V, hidden=8, embed=4) if with_d else None
    corpus = torch.tensor([[5, 6, 7, 2, 0, 0], [8, 9, 2, 0, 0, 0], [10, 11, 12, 13, 2, 0]])
    return CgTObjective(dec, clip, disc, corpus, semantic, lam, tau=0.1, top_k=2)


def test_reward_arms_mix_semantic_and_naturalness():
    obj = _objective(0.3)
    ids = torch.tensor([[5, 6, 2, 0, 0, 0], [8, 2, 0, 0, 0, 0]])
    target = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    r, r_sem, r_nat = obj.reward(ids, target)
    assert r.shape == r_sem.shape == r_nat.shape == (2,)
    assert torch.allclose(r_sem, (obj.clip.encode_text(ids) * target).sum(-1), atol=1e-6)
    assert torch.allclose(r, 0.3 * r_sem + 0.7 * r_nat)
    assert _objective(1.0, with_d=False).reward(ids, target)[2] is None


def test_clip_agg_target_is_a_mixture_of_corpus_embeddings():
    obj = _objective(0.5, "clip_agg")
    img = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    t = obj.target_fn(img, obj.corpus_emb, obj.tau, obj.top_k)
    # with tau -> 0 it is the nearest corpus sentence itself
    nearest = obj.target_fn(img, obj.corpus_emb, 1e-6, 3)
    assert torch.allclose(nearest, obj.corpus_emb[(img @ obj.corpus_emb.T).argmax(1)], atol=1e-5)
    assert t.shape == (3, 8)


def test_bad_reward_settings_are_refused_by_name():
    with pytest.raises(FmlabError, match="clip_foo"):
        _objective(1.0, "clip_foo", with_d=False)
    with pytest.raises(ConfigError, match="naturalness"):
        _objective(0.5, with_d=False)
    with pytest.raises(ConfigError, match="corpus"):
        CgTObjective(CaptionDecoder(V, 8), MiniClip(V, 8, 4), None, torch.zeros(0, 4, dtype=torch.long))
