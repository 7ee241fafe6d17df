"""Issue 20's PVP runs (docs/results/pvp): stage 1 pre-trains the PEFT modules upstream on
CIFAR-10 (backbone frozen), stage 2 tunes them per few-shot task from that init, beside the same
method from a random init and the linear probe, on two downstream sources.

* ``vpt``: deep VPT prompts (10 per block, ``--option deep=true`` in both stages) on a ViT
  pre-trained here (the 600-step MAE ViT of issue 17's further study, ``--vit``; vit_tiny_cifar,
  128-d, 4 blocks, 16 px, patch 2);
* ``lora``: LoRA (r=8) on the pretrained CIFAR-10 ResNet-20 (EuroSAT was measured before; this adds
  MNIST as the second downstream source).

Each step is one ``fmlab finetune`` command in a child process (one thread), skipped when its
``results.json`` exists, so the driver resumes.

    FMLAB_DATA=/work/shared/data python benchmarks/issue20_pvp.py --out runs/pvp2 \
        --vit runs/i17/b/further/theta_init/encoder.safetensors
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

# the same child-process runner as the prompt-method driver (one thread; exits on failure)
_spec = importlib.util.spec_from_file_location("i20p", Path(__file__).with_name("issue20_prompts.py"))
_i20p = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_i20p)


def fmlab(args: list[str], log: Path) -> None:
    print(f"{log.stem}: {_i20p.fmlab(args, log):.0f} s wall", flush=True)


RESNET = "weights/resnet_cifar10/resnet20-12fca82f.th"


def arms(out: Path, method: str, backbone: list[str], sources: list[str], shots: str, seeds: str,
         steps: int, options: list[str], max_test: int) -> None:
    stage1 = out / f"stage1_{method}"
    if not (stage1 / "pvp.json").is_file():
        fmlab(["finetune", "pretrain-peft", *backbone, *options, "--data", "cifar10", "--method", method,
               "--out", str(stage1), "--set", "trainer.max_steps=300", "--set", "trainer.log_every=50",
               "--max-test", "2000", "--no-db"], out / f"stage1_{method}.log")
    for data in sources:
        # stage 2 runs linear beside the method: its options are addressed to the method only
        own = [o if o == "--option" else f"{method}.{o}" for o in options]
        common = [*backbone, *own, "--data", data, "--shots", shots, "--seeds", seeds,
                  "--set", f"trainer.max_steps={steps}", "--no-db"]
        if max_test:  # a seeded subset of the test split (MNIST's 10,000 dominate the cost)
            common += ["--max-test", str(max_test)]
        for tag, extra in ((f"pvp_{method}", ["--method", method, "--init-from", str(stage1)]),
                           (f"random_{method}", ["--method", f"linear,{method}"])):
            dest = out / f"{tag}_{data}"
            if not (dest / "results.json").is_file():
                fmlab(["finetune", *common, *extra, "--out", str(dest)], out / f"{tag}_{data}.log")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--vit", required=True, help="encoder.safetensors of a vit_tiny_cifar pre-trained here")
    ap.add_argument("--methods", default="vpt,lora")
    ap.add_argument("--shots", default="1,2,4,8")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--max-test", type=int, default=0, help="score on N test images (0: all)")
    ap.add_argument("--sources", default=None, help="downstream sources (default: the plan's)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    data = Path(os.environ.get("FMLAB_DATA", ""))
    plans = {"vpt": (["--backbone", "vit_tiny_cifar", "--weights", a.vit], ["eurosat", "mnist"],
                     ["--option", "deep=true"]),
             "lora": (["--backbone", "resnet20_cifar", "--weights", str(data / RESNET)], ["mnist"], [])}
    for m in a.methods.split(","):
        backbone, sources, options = plans[m]
        sources = a.sources.split(",") if a.sources else sources
        arms(a.out, m, backbone, sources, a.shots, a.seeds, a.steps, options, a.max_test)


if __name__ == "__main__":
    main()
