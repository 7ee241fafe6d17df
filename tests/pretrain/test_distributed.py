"""Two gloo processes: gathered losses, their gradients, and shared state match one process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from fmlab.pretrain import DINO, LOOK, MoCo, contrastive_loss

from .conftest import TinyCNN

WORLD = 2


def _data():
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    w = torch.randn(6, 5, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    teacher = [torch.randn(8, 7, generator=g) for _ in range(2)]
    return x1, x2, w, labels, teacher


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        x1, x2, w, labels, teacher = _data()
        sl = slice(rank * 4, rank * 4 + 4)
        out = {}
        for name, lab in (("ntxent", None), ("supcon", labels[sl])):
            wp = w.clone().requires_grad_(True)  # a shared "parameter": z = x @ w
            loss, _ = contrastive_loss([x1[sl] @ wp, x2[sl] @ wp], 0.2, lab)
            loss.backward()
            grad = wp.grad.clone()
            dist.all_reduce(grad)  # what DDP does: the mean of the ranks' gradients
            out[name] = (loss.detach(), grad / WORLD)
        dino = DINO(TinyCNN(), out_dim=7, hidden_dim=8, bottleneck_dim=4)
        dino.update_center([t[sl] for t in teacher])
        out["center"] = dino.center.clone()
        moco = MoCo(TinyCNN(), queue_size=16, proj_dim=6)
        moco.enqueue(F.normalize(x1[sl], dim=1))
        out["queue"], out["ptr"] = moco.queue.clone(), moco.queue_ptr.clone()
        look = LOOK(TinyCNN(dim=6), num_samples=8, proj_dim=None)
        look.update_bank(F.normalize(x2[sl], dim=1), labels[sl], torch.arange(8)[sl])
        out["bank"], out["bank_labels"] = look.bank.clone(), look.bank_labels.clone()
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_ranks_match_one_process(tmp_path: Path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    x1, x2, w, labels, teacher = _data()
    for name, lab in (("ntxent", None), ("supcon", labels)):
        wp = w.clone().requires_grad_(True)
        loss, _ = contrastive_loss([x1 @ wp, x2 @ wp], 0.2, lab)
        loss.backward()
        # equal shards: the mean of the ranks' losses is the global loss ...
        mean_loss = sum(float(r[name][0]) for r in ranks) / WORLD
        assert mean_loss == pytest.approx(float(loss.detach()), rel=1e-5), name
        # ... and the DDP-averaged gradient is the global gradient (key-side terms included)
        for r in ranks:
            assert torch.allclose(r[name][1], wp.grad, atol=1e-5), name
    center = 0.1 * torch.cat(teacher).mean(0, keepdim=True)
    for r in ranks:
        assert torch.allclose(r["center"], center, atol=1e-6)
        assert torch.allclose(r["queue"][:8], F.normalize(x1, dim=1), atol=1e-6)
        assert int(r["ptr"]) == 8
        assert torch.allclose(r["bank"], F.normalize(x2, dim=1), atol=1e-6)
        assert torch.equal(r["bank_labels"], labels)
