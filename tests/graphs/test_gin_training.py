"""GIN, GraphCL and the training commands: invariance, augmentation rates, exact resume, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric", reason="the GIN needs PyTorch Geometric (pip install -e '.[graph]')")

from fmlab.cli.main import main  # noqa: E402
from fmlab.data.graphs import GraphSource, read_tu  # noqa: E402
from fmlab.graphs.objectives import GRAPH_OBJECTIVES, GraphCL, drop_edges, mask_features  # noqa: E402
from fmlab.models.gin import GIN  # noqa: E402
from tests.graphs._tu import random_graphs, write_tu  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "graph"
TINY = ["model.hidden=16", "model.layers=2", "trainer.batch_size=8", "trainer.log_every=1",
        "trainer.max_steps=4", "trainer.checkpoint_every=2", "schedule.warmup_steps=0"]


@pytest.fixture
def tu(tmp_path):
    return write_tu(tmp_path / "SYN", *random_graphs(40))


def _batch(folder, idx):
    return {k: torch.as_tensor(v) for k, v in GraphSource([read_tu(folder)]).get_batch(np.asarray(idx)).items()}


def test_graph_embedding_is_invariant_to_node_permutation(tu):
    torch.manual_seed(0)
    enc = GIN(in_dim=11, hidden=16, layers=3).eval()
    b = _batch(tu, [1, 2, 3])
    n = b["x"].shape[0]
    perm = torch.randperm(n)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    moved = {**b, "x": b["x"][perm], "batch": b["batch"][perm], "edge_index": inv[b["edge_index"]]}
    assert torch.allclose(enc(b), enc(moved), atol=1e-5)
    # and the graphs' order within the batch only permutes the rows
    assert torch.allclose(enc(_batch(tu, [3, 1, 2])), enc(b)[[2, 0, 1]], atol=1e-5)


def test_feature_masking_masks_exactly_the_masked_nodes_at_its_rate():
    torch.manual_seed(0)
    x = torch.rand(20000, 5) + 0.1
    xm, mask = mask_features(x, 0.3)
    assert torch.all(xm[mask] == 0) and torch.equal(xm[~mask], x[~mask])
    assert abs(mask.float().mean().item() - 0.3) < 0.01


def test_edge_dropping_is_symmetric_and_at_its_rate():
    torch.manual_seed(0)
    n = 3000
    u = torch.randint(0, n, (20000,))
    v = (u + torch.randint(1, n, (20000,))) % n
    pairs = torch.unique(torch.stack([torch.minimum(u, v), torch.maximum(u, v)]), dim=1)
    e = torch.cat([pairs, pairs.flip(0)], dim=1)
    kept = drop_edges(e, 0.25, n)
    fwd = set(map(tuple, kept.T.tolist()))
    assert all((b, a) in fwd for a, b in fwd)  # both directions kept or dropped together
    assert fwd <= set(map(tuple, e.T.tolist()))
    assert abs(1 - kept.shape[1] / e.shape[1] - 0.25) < 0.02


def test_graphcl_loss_is_nt_xent_of_the_two_views(tu):
    from fmlab.pretrain.simclr import contrastive_loss

    assert GRAPH_OBJECTIVES.get("graphcl") is GraphCL
    torch.manual_seed(0)
    b = _batch(tu, list(range(8)))
    obj = GraphCL(GIN(in_dim=11, hidden=16, layers=2), edge_drop=0.0, feature_mask=0.0).eval()
    v = obj.view(b)  # no augmentation: the view is the batch
    assert torch.equal(v["x"], b["x"].float()) and torch.equal(v["edge_index"], b["edge_index"])
    z = obj.proj(obj.encoder(b))
    loss, _ = obj(b)
    assert torch.allclose(loss, contrastive_loss([z, z], temperature=0.2)[0])
    obj.edge_drop, obj.feature_mask = 1.0, 1.0  # everything dropped and masked
    v = obj.view(b)
    assert v["edge_index"].shape[1] == 0 and v["x"].abs().sum() == 0


def _run(args):
    return main([str(a) for a in args])


def test_pretrain_resume_after_a_crash_is_bit_identical(tu, tmp_path, capsys):
    sets = [a for o in TINY + [f"data.pretrain=tu:{tu}"] for a in ("--set", o)]
    straight = tmp_path / "straight"
    assert _run(["graph", "pretrain", "--config", CONFIGS / "graphcl.yaml", "--out", straight, *sets]) == 0
    crashed = tmp_path / "crashed"
    shutil.copytree(straight, crashed)
    (crashed / "encoder.safetensors").unlink()
    pointer = crashed / "checkpoints" / "latest.json"
    info = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({k: (v.replace("00000004", "00000002") if isinstance(v, str) else v)
                                   for k, v in info.items()} | {"step": 2}))
    assert _run(["graph", "pretrain", "--resume", crashed]) == 0
    from safetensors.torch import load_file

    a, b = load_file(str(straight / "encoder.safetensors")), load_file(str(crashed / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_from_pretrained_and_scratch_share_the_split(tu, tmp_path, capsys):
    pre = tmp_path / "pre"
    common = TINY + [f"data.pretrain=tu:{tu}", f"data.downstream=tu:{tu}"]
    sets = [a for o in common for a in ("--set", o)]
    assert _run(["graph", "pretrain", "--config", CONFIGS / "graphcl.yaml", "--out", pre, *sets]) == 0
    for name, init in (("ft_pre", pre), ("ft_scratch", "")):
        assert _run(["graph", "finetune", "--config", CONFIGS / "finetune.yaml", "--out", tmp_path / name,
                     *sets, "--set", f"init={init}"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    r1, r2 = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("ft_pre", "ft_scratch"))
    assert r1["split_hash"] == r2["split_hash"] and r1["init"] != r2["init"] and 0 <= r1["accuracy"] <= 1


@pytest.mark.parametrize("extra, words", [
    (["--set", "objective.tau=1"], "objective.tau"),
    (["--set", "data.pretrain=tu:/nonexistent/DS"], "/nonexistent/DS"),
])
def test_bad_pretrain_input_exits_2(tmp_path, capsys, extra, words):
    rc = _run(["graph", "pretrain", "--config", CONFIGS / "graphcl.yaml", "--out", tmp_path / "r", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "Traceback" not in err


def test_finetune_with_weights_of_another_size_is_refused(tu, tmp_path, capsys):
    pre = tmp_path / "pre"
    sets = [a for o in TINY + [f"data.pretrain=tu:{tu}", f"data.downstream=tu:{tu}"] for a in ("--set", o)]
    assert _run(["graph", "pretrain", "--config", CONFIGS / "graphcl.yaml", "--out", pre, *sets]) == 0
    rc = _run(["graph", "finetune", "--config", CONFIGS / "finetune.yaml", "--out", tmp_path / "ft", *sets,
               "--set", "model.hidden=32", "--set", f"init={pre}"])
    err = capsys.readouterr().err
    assert rc == 2 and "encoder.safetensors" in err and "do not fit" in err
