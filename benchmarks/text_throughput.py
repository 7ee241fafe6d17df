"""Text pre-training throughput: the engine vs a bare PyTorch loop (same MLM model, batch and
optimiser), and bf16 autocast vs fp32 under the engine; tokens per second, side by side.

The model is the ``mlm`` objective (BERT, hidden 128, 2 layers, vocabulary 2,000) on random
packed blocks (batch 16 x 128 tokens). Repetitions are interleaved (bare, engine, engine-bf16,
bare, ...) so machine load hits all alike; each throughput is the steady state from the end of
step 3 to the last step, from this process's CPU time (``time.process_time``, robust on a shared
machine; run with one thread) and from wall time. The ratio of medians is reported.

    python benchmarks/text_throughput.py [--steps 30] [--reps 3] [--batch 16] [--block 128] [--skip-bf16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from fmlab.engine import OptimConfig, ScheduleConfig, Trainer, TrainerConfig
from fmlab.engine.data import epoch_permutation
from fmlab.text.objectives import MLM
from fmlab.text.packing import BlockSource

SIZE = {"hidden": 128, "layers": 2, "heads": 2, "max_positions": 128}


def _tokenizer(vocab: int):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = {t: i for i, t in enumerate(specials + [f"w{i}" for i in range(vocab - 5)])}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(words, "[UNK]")),
                                   pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


class Clocked(MLM):
    """MLM with a clock after every optimiser step (the engine calls the hook; the bare loop too)."""

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        self.stamps.append((time.perf_counter(), time.process_time()))


def _model(tok) -> Clocked:
    torch.manual_seed(0)
    m = Clocked(tok, SIZE)
    m.stamps = []
    return m


def _steady(stamps, tokens_per_step: int, skip: int = 3) -> tuple[float, float]:
    (w0, c0), (w1, c1) = stamps[skip - 1], stamps[-1]
    n = (len(stamps) - skip) * tokens_per_step
    return n / (w1 - w0), n / (c1 - c0)


def bare(tok, src, steps: int, batch: int) -> tuple[float, float]:
    model = _model(tok).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    per_epoch = len(src) // batch
    for step in range(steps):
        epoch, k = divmod(step, per_epoch)
        if k == 0:
            perm = epoch_permutation(len(src), 0, epoch)
        loss, _ = model(src.get_batch(perm[k * batch:(k + 1) * batch]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.on_after_optimizer_step(step, steps)
    return _steady(model.stamps, batch * src.blocks.shape[1])


def engine(tok, src, steps: int, batch: int, bf16: bool) -> tuple[float, float]:
    model = _model(tok)
    cfg = TrainerConfig(max_steps=steps, batch_size=batch, log_every=50, checkpoint_every=0,
                        progress=False, tensorboard=False, device="cpu", bf16=bf16)
    with tempfile.TemporaryDirectory() as d:
        Trainer(model, src, cfg, OptimConfig(lr=5e-4, weight_decay=0.01),
                ScheduleConfig(name="constant"), run_dir=d).fit()
    return _steady(model.stamps, batch * src.blocks.shape[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-bf16", action="store_true", help="engine vs bare only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = _tokenizer(2000)
    g = torch.Generator().manual_seed(0)
    src = BlockSource(torch.randint(5, 2000, (args.batch * 40, args.block), generator=g))
    res: dict[str, list[tuple[float, float]]] = {"bare": [], "engine": [], "engine_bf16": []}
    for _ in range(args.reps):
        res["bare"].append(bare(tok, src, args.steps, args.batch))
        res["engine"].append(engine(tok, src, args.steps, args.batch, False))
        if not args.skip_bf16:
            res["engine_bf16"].append(engine(tok, src, args.steps, args.batch, True))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in res.items() if v}
    print(f"torch {torch.__version__}, threads {args.threads}, batch {args.batch}x{args.block}, "
          f"{args.steps} steps x {args.reps} reps (steady state from step 3)")
    print("| loop | tokens/s (wall) | tokens/s (CPU) | CPU ratio to bare fp32 |")
    print("|---|---|---|---|")
    for k, (w, c) in med.items():
        print(f"| {k} | {w:.0f} | {c:.0f} | {c / med['bare'][1]:.3f} |")
    print(f"engine / bare (CPU): {med['engine'][1] / med['bare'][1]:.3f}")
    if "engine_bf16" in med:
        print(f"bf16 / fp32 under the engine (CPU): {med['engine_bf16'][1] / med['engine'][1]:.3f}")


if __name__ == "__main__":
    main()
