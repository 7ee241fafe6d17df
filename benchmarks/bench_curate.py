"""Benchmark ``fmlab curate`` end to end: 1M twelve-word captions against 100k entries.

The pool is synthetic and seeded: a vocabulary of made-up words drawn with Zipf-like frequencies
(rank^-1.1), so a few entries are very frequent (head) and most are rare (tail) as in real
captions. Entries are 70k unigrams (ranks after the 50 most frequent "stop words") and 30k
bigrams sampled from the same distribution. The whole command (reading, matching, counting,
sampling, writing, stats and plot) runs in a child process; we report its wall time, CPU time and
peak RSS, with the load average, since the machine is shared.

    python benchmarks/bench_curate.py [--captions 1000000] [--entries 100000] [--threshold 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


_WRAP = """
import json, resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu": r.ru_utime + r.ru_stime, "maxrss_mib": r.ru_maxrss / 1024}))
sys.exit(rc)
"""


def make_vocab(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct lower-case pseudo-words of 3-9 letters."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        lens = rng.integers(3, 10, size=n)
        chars = letters[rng.integers(0, 26, size=(n, 9))]
        for row, k in zip(chars, lens):
            w = "".join(row[:k])
            if w not in seen:
                seen.add(w)
                words.append(w)
                if len(words) == n:
                    break
    return words


def zipf_probs(n: int, s: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()


def generate(
    workdir: Path, n_captions: int, n_entries: int, vocab_size: int, seed: int
) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    vocab = make_vocab(vocab_size, rng)
    p = zipf_probs(vocab_size)
    n_uni = int(0.7 * n_entries)
    uni = rng.choice(np.arange(50, vocab_size), size=n_uni, replace=False)
    entries = {vocab[i] for i in uni}
    while len(entries) < n_entries:
        pairs = rng.choice(vocab_size, size=(n_entries, 2), p=p)
        for a, b in pairs:
            entries.add(f"{vocab[a]} {vocab[b]}")
            if len(entries) == n_entries:
                break
    entries_path = workdir / "entries.txt"
    entries_path.write_text("\n".join(sorted(entries)) + "\n")

    captions_path = workdir / "captions.jsonl"
    chunk = 100_000
    with open(captions_path, "w") as f:
        for start in range(0, n_captions, chunk):
            n = min(chunk, n_captions - start)
            ids = rng.choice(vocab_size, size=(n, 12), p=p)
            comma = rng.integers(1, 11, size=n)
            lines = []
            for k, row in enumerate(ids):
                words = [vocab[j] for j in row]
                words[comma[k]] += ","
                lines.append(f'{{"id": {start + k}, "caption": "{" ".join(words)}."}}\n')
            f.writelines(lines)
    return captions_path, entries_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", type=int, default=1_000_000)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--vocab", type=int, default=200_000)
    ap.add_argument("--threshold", type=float, default=20_000)
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic pool")
    ap.add_argument("--workers", default="1,0", help="comma list of --workers values to run")
    ap.add_argument(
        "--workdir", default=None, help="where to write the pool (default: a temp dir, removed)"
    )
    args = ap.parse_args()

    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="bench_curate_"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        captions, entries = generate(tmp, args.captions, args.entries, args.vocab, args.seed)
        gen_s = time.perf_counter() - t
        size_mb = captions.stat().st_size / 2**20
        print(
            f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
            f"python {platform.python_version()}"
        )
        print(
            f"pool: {args.captions:,} captions x 12 words ({size_mb:.0f} MiB JSONL), "
            f"{args.entries:,} entries, "
            f"vocab {args.vocab:,} Zipf s=1.1, t={args.threshold:g}; generated in {gen_s:.1f} s"
        )
        walls = {}
        for workers in [int(w) for w in args.workers.split(",")]:
            out = tmp / f"out_w{workers}"
            cmd = [sys.executable, "-m", "fmlab.cli.main", "curate", "--captions", str(captions),
                   "--entries", str(entries), "--threshold", str(args.threshold), "--seed", "1234",
                   "--out", str(out), "--workers", str(workers)]
            load_before = os.getloadavg()
            t = time.perf_counter()
            # a fresh wrapper per run: ru_maxrss is this run's (RUSAGE_CHILDREN keeps the max)
            wrapped = [sys.executable, "-c", _WRAP, *cmd]
            proc = subprocess.run(wrapped, capture_output=True, text=True)
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                sys.exit(f"curate failed ({proc.returncode}):\n{proc.stderr}")
            usage = json.loads(proc.stdout.strip().splitlines()[-1])
            stats = json.loads((out / "stats.json").read_text())
            walls[workers] = wall
            print(
                f"\n--workers {workers} (used {stats['workers']}): "
                f"load(1,5,15) before={tuple(round(x, 2) for x in load_before)} "
                f"after={tuple(round(x, 2) for x in os.getloadavg())}"
            )
            print(
                f"matches: {stats['matches_before']:,} "
                f"({stats['mean_entries_per_matched_pair']:.2f} per matched pair), "
                f"pairs matched {stats['pairs_matched']:,}, kept {stats['pairs_kept']:,}; "
                f"head entries {stats['head_entries']:,}, tail {stats['tail_entries']:,}"
            )
            print(
                f"fmlab curate end to end: wall {wall:.1f} s, CPU {usage['cpu']:.1f} s (user+sys, "
                f"all processes), peak RSS {usage['maxrss_mib']:.0f} MiB (largest process)"
            )
            print("stages (s): " + ", ".join(f"{k} {v}" for k, v in stats["seconds"].items()))
            print(f"command: {' '.join(cmd)}")
        if len(walls) > 1:
            base = next(iter(walls))
            print("\nwall ratio vs --workers " + f"{base}: "
                  + ", ".join(f"{w}: {walls[base] / v:.2f}x" for w, v in walls.items()))
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
