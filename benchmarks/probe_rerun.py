"""Rerun every case the reliability probe marked FAIL against this checkout, with its pass rule.

The probe (``reliability-probe.md``, at commit 3c8f63d) tried 203 hostile cases; 39 failed. This
script rebuilds its hostile fixtures (``fx/``) in a temporary folder, reruns each failing case
(§1 F5-F15 rows, §4 S2 and S4-S11, F1, F16, F3 and observation (a)) and prints a markdown table

    | case | command | before | after (exit, first line of stderr) | verdict |

where "before" is the probe's recorded result. A command case passes when it exits with status 2,
prints no traceback, its message names the file, key or value at fault, leaves no output (nor a
temporary file) behind, and the payload of a malicious file did not run. The zip bomb (S6, 1 GiB
of zeros here, built a chunk at a time) also passes when ``data info`` streams it with at most
512 MB RSS; it runs with ``FMLAB_MAX_ARRAY_BYTES`` = 256 MiB in case the guard reads a limit
from there. The other cases say their own rule in the table.

Run from the repository root, with ``FMLAB_DATA`` set for the cases that need MNIST or the shipped
GAN weights (they are skipped, with a note, otherwise)::

    FMLAB_DATA=/path/to/data python benchmarks/probe_rerun.py            # all cases
    python benchmarks/probe_rerun.py --only feat-16,S11 --keep /tmp/fx    # some cases, keep fx/

The read-only-folder cases need ``unshare -m`` and ``mount --bind`` (root); they are skipped with
a note when that is not available. The commands run ``python -m fmlab`` with this checkout's
``src`` first on ``PYTHONPATH``, a private ``FMLAB_CACHE``, ``HF_HUB_OFFLINE=1`` and
``OMP_NUM_THREADS=1``, under a 16 GB address-space limit so that an unguarded allocation fails
instead of exhausting a shared machine. Exit status: 0 when every case that ran passed, else 1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ADDRESS_SPACE_LIMIT = 16 << 30
BOMB_BYTES = 1 << 30  # decompressed size of fx/bomb.npz (the probe used 3 GB)
RSS_LIMIT_MB = 512  # the bomb case passes only if `data info` stays below this
GAN = ["--set", "trainer.max_steps=3", "--set", "data.limit=256", "--set", "eval.n=200"]
GAN_CONFIG = "configs/gan/mnist_dcgan_hinge.yaml"
FEAT = ["features", "extract", "--backbone", "resnet20_cifar", "--split", "train"]


# ------------------------------------------------------------------------------------------------
# Fixtures (reliability-probe.md, "Fixtures")
# ------------------------------------------------------------------------------------------------

def _decode_jpegs(buf: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(buf[offsets[i]:offsets[i + 1]].tobytes()))
                                .convert("RGB")) for i in idx])


def make_good(fx: Path) -> None:
    """200 train / 100 test decoded demo images, 20 and 10 per class."""
    z = np.load(REPO / "src/fmlab/assets/cifar10_demo.npz")
    out = {"class_names": z["class_names"]}
    for split, per_class in (("train", 20), ("test", 10)):
        y = z[f"y_{split}"]
        idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
        out[f"x_{split}"] = _decode_jpegs(z[f"x_{split}_jpeg"], z[f"x_{split}_jpeg_offsets"], idx)
        out[f"y_{split}"] = y[idx]
    np.savez(fx / "good.npz", **out)


def _npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def _small_arrays(n_train: int) -> dict[str, np.ndarray]:
    return {"y_train": np.zeros(n_train, np.uint8), "x_test": np.zeros((10, 32, 32, 3), np.uint8),
            "y_test": np.arange(10, dtype=np.uint8), "class_names": np.array([str(i) for i in range(10)])}


def _write_npy_member(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    zf.writestr(name + ".npy", buf.getvalue())


def make_huge_and_bomb(fx: Path) -> None:
    """hugeshape.npz: a header claiming a 279 GiB array; bomb.npz: 1 GiB of zeros, deflated.

    The bomb is written a chunk at a time, so building it needs a few MB of memory.
    """
    with zipfile.ZipFile(fx / "hugeshape.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x_train.npy", _npy_header((100000, 1000, 1000, 3)) + bytes(64))
        for k, v in _small_arrays(100000).items():
            _write_npy_member(zf, k, v)
    n = BOMB_BYTES // (32 * 32 * 3)
    chunk = bytes(16 << 20)
    with zipfile.ZipFile(fx / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x_train.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((n, 32, 32, 3)))
            left = n * 32 * 32 * 3
            while left:
                f.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
        for k, v in _small_arrays(n).items():
            _write_npy_member(zf, k, v)


def make_png_bomb(folder: Path) -> None:
    """folder_bomb/: 12 normal PNGs and one whose IHDR claims 100000 x 100000 (CRC fixed up)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = folder / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    png[16:24] = (100000).to_bytes(4, "big") * 2  # IHDR width, height
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    (folder / "train" / "a" / "bomb.png").write_bytes(bytes(png))


def make_evil(fx: Path, marker: Path) -> None:
    """evil.pt: torch.save of an object whose __reduce__ runs os.system('touch MARKER')."""
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {shlex.quote(str(marker))}",))

    torch.save({"state_dict": Evil()}, fx / "evil.pt")


def make_text(fx: Path) -> None:
    (fx / "nonutf8.yaml").write_bytes(b"name: caf\xe9\n")
    (fx / "nonutf8.jsonl").write_bytes(b'\xff\xfe{"image": "a.png", "caption": "caf\xe9"}\n')
    (fx / "caps_empty.jsonl").write_bytes(b"")
    (fx / "caps_good.jsonl").write_text("".join(json.dumps({"caption": c}) + "\n" for c in
                                                ("a cat on a mat", "a dog in the park", "a bird")))
    (fx / "entries.txt").write_text("cat\ndog\nbird\n")
    (fx / "zero.db").write_bytes(b"")
    (fx / "victim.txt").write_bytes(b"")
    rng = np.random.default_rng(0)
    np.savez(fx / "fake_labels_oob.npz", images=rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
             labels=np.full(64, 42, np.int64))
    np.savez(fx / "zero_hw.npz", x_train=np.zeros((20, 0, 0, 3), np.uint8),
             y_train=np.arange(20, dtype=np.uint8) % 10, x_test=np.zeros((10, 0, 0, 3), np.uint8),
             y_test=np.arange(10, dtype=np.uint8), class_names=np.array([str(i) for i in range(10)]))
    for d in ("emptydir", "rodir"):
        (fx / d).mkdir()


def make_generator(fx: Path, data: Path) -> None:
    """G.safetensors from the shipped MLP GAN checkpoint."""
    import torch
    from safetensors.torch import save_file

    sd = torch.load(data / "weights/mnist_small/G--300.ckpt", weights_only=True, map_location="cpu")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(fx / "G.safetensors"))


def make_ganrun(runner: Runner) -> Result:
    """fx/ganrun (a 3-step GAN run made with --no-db), which is also case S9 (F4)."""
    args = ["gan", "train", "--config", GAN_CONFIG, *GAN, "--no-db", "--out", "fx/ganrun"]
    res = runner.run(args, timeout=runner.timeout * 3)
    run = runner.work / "fx/ganrun"
    db = run / "fmlab.db"
    ok = res.rc == 0 and (run / "generator.safetensors").is_file()
    res.verdict = ("PASS" if ok and not db.exists() else
                   "FAIL (the run failed)" if not ok else "FAIL (--no-db wrote fx/ganrun/fmlab.db)")
    if ok:
        trav = runner.work / "fx/ganrun_trav"
        shutil.copytree(run, trav)
        pointer = trav / "checkpoints" / "latest.json"
        meta = json.loads(pointer.read_text())
        for k, v in meta.items():
            if isinstance(v, str) and v.endswith(".safetensors"):
                meta[k] = "../../../../../../etc/passwd"
        pointer.write_text(json.dumps(meta))
    return res


# ------------------------------------------------------------------------------------------------
# Running a case
# ------------------------------------------------------------------------------------------------

@dataclass
class Result:
    rc: int | str
    out: str
    seconds: float
    verdict: str = ""
    rss_mb: float | None = None

    def first_line(self) -> str:
        """The first line of stderr that is not a warning or a progress bar (for a traceback:
        its last line, the exception)."""
        lines = [ln.strip() for ln in self.out.splitlines() if ln.strip()]
        if "Traceback" in self.out and lines:
            return "Traceback … " + lines[-1]
        keep = [ln for ln in lines if "Warning" not in ln and "warn(" not in ln and "%|" not in ln]
        return (keep or lines or [""])[0]


_RSS_WRAPPER = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(r.returncode)
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


class Runner:
    """Runs ``python -m fmlab ...`` in the scratch folder with the probe's environment."""

    def __init__(self, work: Path, timeout: float, data: Path | None) -> None:
        self.work, self.timeout, self.data = work, timeout, data
        self.env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
                        FMLAB_CACHE=str(work / "cache"),
                        PYTHONPATH=os.pathsep.join([str(REPO / "src"),
                                                    os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        if data is None:
            self.env.pop("FMLAB_DATA", None)
        else:
            self.env["FMLAB_DATA"] = str(data)
        self.ro_ok, self.ro_note = self._check_ro()

    def _check_ro(self) -> tuple[bool, str]:
        probe = self.work / "fx" / "rodir"
        cmd = ["unshare", "-m", "sh", "-c", "mount --bind -o ro fx/rodir fx/rodir && touch fx/rodir/t"]
        try:
            r = subprocess.run(cmd, cwd=self.work, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"unshare unavailable ({e})"
        if (probe / "t").exists():
            (probe / "t").unlink()
            return False, "the bind mount did not make fx/rodir read-only"
        if "Read-only" not in r.stderr:
            return False, f"unshare -m failed: {r.stderr.strip()[:80]}"
        return True, ""

    def command(self, args: list[str], ro: bool = False) -> list[str]:
        cmd = [sys.executable, "-m", "fmlab", *args]
        if ro:
            cmd = ["unshare", "-m", "sh", "-c",
                   f"mount --bind -o ro fx/rodir fx/rodir && exec {shlex.join(cmd)}"]
        return cmd

    def run(self, args: list[str], ro: bool = False, timeout: float | None = None,
            measure_rss: bool = False, env: dict[str, str] | None = None) -> Result:
        cmd = self.command(args, ro)
        rss_file = self.work / "rss.txt"
        if measure_rss:
            cmd = [sys.executable, "-c", _RSS_WRAPPER, str(rss_file), *cmd]
        start = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=self.work, env={**self.env, **(env or {})}, capture_output=True,
                               timeout=timeout or self.timeout, preexec_fn=_limit_memory)
            rc: int | str = p.returncode
            out = p.stderr.decode("utf-8", "replace") + p.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as e:
            rc, out = "timeout", (e.stderr or b"").decode("utf-8", "replace")
        res = Result(rc, out, time.perf_counter() - start)
        if measure_rss and rss_file.is_file():
            res.rss_mb = int(rss_file.read_text()) / 1024
        return res


def display(args: list[str], ro: bool = False) -> str:
    text = "fmlab " + shlex.join(args)
    return f"[ro fx/rodir] {text}" if ro else text


def _hidden_files(fx: Path) -> set[Path]:
    return {p for p in fx.rglob(".*") if p.is_file()}


# ------------------------------------------------------------------------------------------------
# The cases
# ------------------------------------------------------------------------------------------------

@dataclass
class Case:
    """One failing §1 command and its pass rule (exit 2, no traceback, names, nothing left)."""

    id: str
    args: list[str]
    before: str
    names: tuple[str, ...]
    outputs: tuple[str, ...] = ()
    ro: bool = False
    data: bool = False
    needs: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    timeout: float | None = None
    rss: bool = False
    stays_empty: tuple[str, ...] = field(default=())
    env: dict[str, str] = field(default_factory=dict)


def _cases() -> list[Case]:
    g = ["--generator", "fx/G.safetensors", "--arch", "mlp"]
    gu = ["--out", "fx/out_gu", "--no-db", "--adapt-steps", "1", "--unlearn-steps", "1", "--n-eval", "50"]
    fe = ["--out", "fx/out_fe/f.safetensors", "--no-cache"]
    ge = ["gan", "eval", "--ref", "mnist:test", "--ref-n", "200", "--features", "lenet5_mnist"]
    tb = "1, traceback: "
    return [
        Case("data-17", ["data", "info", "jsonl:fx/nonutf8.jsonl"], tb + "UnicodeDecodeError", ("fx/nonutf8.jsonl",)),
        Case("feat-02", [*FEAT, *fe, "--data", "npz:fx/zero_hw.npz"], tb + "RuntimeError: Input and output sizes "
             "should be greater than 0", ("fx/zero_hw.npz",), ("fx/out_fe",)),
        Case("feat-04 / S7", [*FEAT, *fe, "--data", "folder:fx/folder_bomb"], tb + "PIL DecompressionBombError "
             "(file not named)", ("bomb.png",), ("fx/out_fe",)),
        Case("feat-16", [*FEAT, *fe, "--data", "npz:fx/good.npz", "--batch-size", "0"],
             tb + "ValueError: range() arg 3 must not be zero", ("batch",), ("fx/out_fe",)),
        Case("feat-17", [*FEAT, *fe, "--data", "npz:fx/good.npz", "--batch-size", "-5"],
             "2, wrong diagnosis: split 'train' of fx/good.npz is empty", ("batch",), ("fx/out_fe",)),
        Case("feat-19", [*FEAT, *fe, "--data", "npz:fx/good.npz", "--views", "-1"], "0, accepted silently",
             ("views",), ("fx/out_fe",)),
        Case("feat-20", [*FEAT, "--data", "npz:fx/good.npz", "--out", "fx/emptydir", "--no-cache"],
             tb + "IsADirectoryError", ("fx/emptydir",), stays_empty=("fx/emptydir",)),
        Case("feat-21", [*FEAT, "--data", "npz:fx/good.npz", "--out", "fx/rodir/f.safetensors", "--no-cache"],
             tb + "OSError: Read-only file system", ("fx/rodir",), ro=True),
        Case("feat-22", [*FEAT, "--data", "npz:fx/good.npz", "--out", "fx/good.npz/f.safetensors", "--no-cache"],
             tb + "FileExistsError: 'fx/good.npz'", ("fx/good.npz",)),
        Case("eval-05", ["eval", "classify", "--backbone", "resnet20_cifar", "--data", "npz:fx/good.npz",
                         "--batch-size", "0", "--no-db"], tb + "ValueError: range() arg 3 must not be zero",
             ("batch",)),
        Case("adapt-09", ["adapt", "--backbone", "resnet20_cifar", "--data", "npz:fx/good.npz", "--methods", "ncm",
                          "--shots", "1", "--seeds", "1", "--out", "fx/rodir/ad"],
             tb + "OSError: Read-only file system", ("fx/rodir",), ro=True),
        Case("adapt-11", ["adapt", "--backbone", "resnet20_cifar", "--data", "npz:fx/good.npz", "--methods", "ncm",
                          "--seeds", "1", "--out", "fx/out_ad", "--shots", "1", "--views", "-2"],
             "0, accepted silently", ("views",), ("fx/out_ad",)),
        Case("adapt-15", ["adapt", "--backbone", "resnet20_cifar", "--data", "npz:fx/good.npz", "--methods", "ncm",
                          "--out", "fx/out_ad", "--shots", "1", "--seeds", "-1"],
             tb + "ValueError: expected non-negative integer", ("seeds",), ("fx/out_ad",)),
        Case("gan-07", ["gan", "train", "--out", "fx/out_gan", "--no-db", "--config", "fx/nonutf8.yaml"],
             tb + "UnicodeDecodeError", ("fx/nonutf8.yaml",), ("fx/out_gan",)),
        Case("gan-23 / S2", ["gan", "train", "--resume", "fx/ganrun_trav", "--set", "trainer.max_steps=60",
                             "--no-db"], "2, but it opened fx/ganrun_trav/checkpoints/../../../../../../etc/passwd",
             ("latest.json",), data=True, needs=("fx/ganrun_trav",), forbid=("deserializ",)),
        Case("gan-24", ["gan", "train", "--config", GAN_CONFIG, *GAN, "--out", "fx/rodir/g", "--no-db"],
             tb + "OSError: Read-only file system", ("fx/rodir",), ro=True, data=True),
        Case("gsam-08", ["gan", "sample", *g, "--out", "fx/emptydir"], tb + "IsADirectoryError",
             ("fx/emptydir",), data=True, needs=("fx/G.safetensors",), stays_empty=("fx/emptydir",)),
        Case("gsam-09", ["gan", "sample", *g, "--out", "fx/rodir/s.png"], tb + "OSError: Read-only file system",
             ("fx/rodir",), ro=True, data=True, needs=("fx/G.safetensors",)),
        Case("gsam-10", ["gan", "sample", "--out", "fx/out_gs/s.png", *g, "--arch-kwargs", '{"z_dim": -1}'],
             tb + "RuntimeError: negative dimension -1", ("z_dim",), ("fx/out_gs",), data=True,
             needs=("fx/G.safetensors",)),
        Case("gsam-12", ["gan", "sample", "--out", "fx/out_gs/s.png", "--generator", "fx/ganrun", "--nrow", "0"],
             "0, accepted silently", ("nrow",), ("fx/out_gs",), data=True, needs=("fx/ganrun",)),
        Case("gsam-13 / S8", ["gan", "sample", "--out", "fx/out_gs/s.png", "--generator", "fx/ganrun", "--n",
                              "100000000"], tb + "RuntimeError: can't allocate 51200000000 bytes",
             ("--n", "100000000", "1e8"), ("fx/out_gs",), data=True, needs=("fx/ganrun",)),
        Case("geval-03", [*ge, "--metrics", "ifid", "--fake-images", "fx/fake_labels_oob.npz"],
             "2, misleading: intra-FID: class 0 has 0 fake samples", ("fake_labels_oob.npz", "42"), data=True),
        Case("geval-11", [*ge, "--metrics", "fid", "--generator", "fx/ganrun", "--n", "50", "--batch-size", "0"],
             tb + "ValueError: range() arg 3 must not be zero", ("batch",), data=True, needs=("fx/ganrun",)),
        Case("gunl-03 / F1", ["gan", "unlearn", "--generator", "fx/ganrun", "--target-class", "3", "--gamma", "nan",
                              *gu], "0, NaN generator written and reported as success", ("gamma",),
             ("fx/out_gu",), data=True, needs=("fx/ganrun",)),
        Case("pre-08", ["pretrain", "--out", "fx/out_pt", "--config", "fx/nonutf8.yaml"], tb + "UnicodeDecodeError",
             ("fx/nonutf8.yaml",), ("fx/out_pt",)),
        Case("clip-01", ["clip", "train", "--config", "fx/nonutf8.yaml", "--out", "fx/out_clip"],
             tb + "UnicodeDecodeError", ("fx/nonutf8.yaml",), ("fx/out_clip",)),
        Case("cur-02", ["curate", "--out", "fx/out_cu", "--captions", "fx/caps_empty.jsonl", "--entries",
                        "fx/entries.txt", "-t", "1"], "0, empty outputs", ("fx/caps_empty.jsonl",), ("fx/out_cu",)),
        Case("cur-13", ["curate", "--out", "fx/rodir/cu", "--captions", "fx/caps_good.jsonl", "--entries",
                        "fx/entries.txt", "-t", "1"], tb + "OSError: Read-only file system", ("fx/rodir",), ro=True),
        Case("ft-07", ["finetune", "--backbone", "resnet20_cifar", "--data", "npz:fx/good.npz", "--shots", "1",
                       "--seeds", "1", "--out", "fx/out_ft", "--no-db", "--max-test", "20", "--method", "lora",
                       "--set", "trainer.max_steps=0"], "0, accuracy of an untrained head", ("max_steps",),
             ("fx/out_ft",)),
        Case("demo-04", ["demo", "--out", "fx/rodir/demo", "--shots", "1", "--seeds", "1", "--methods", "ncm"],
             tb + "OSError: Read-only file system", ("fx/rodir",), ro=True),
        Case("S5 / F8", ["data", "info", "npz:fx/hugeshape.npz"], tb + "numpy _ArrayMemoryError (279 GiB)",
             ("fx/hugeshape.npz",)),
        Case("S6 / F8", ["data", "info", "npz:fx/bomb.npz"], "2.97 GB RSS for a 2.9 MB bomb (3 GB of zeros)",
             ("fx/bomb.npz",), rss=True, env={"FMLAB_MAX_ARRAY_BYTES": str(256 << 20)}),
        Case("obs-a", [*FEAT, *fe, "--data", "npz:fx/good.npz", "--weights", "fx/evil.pt"],
             "2, but torch's 6-line advice to re-run with weights_only=False", ("fx/evil.pt",), ("fx/out_fe",),
             forbid=("weights_only` set to `False", "Re-running")),
    ]


def run_case(runner: Runner, case: Case, marker: Path) -> tuple[Result | None, str]:
    """Run one §1-style case; return its result (None when skipped) and the verdict."""
    if case.data and runner.data is None:
        return None, "SKIP (needs FMLAB_DATA)"
    if case.ro and not runner.ro_ok:
        return None, f"SKIP ({runner.ro_note})"
    missing = [n for n in case.needs if not (runner.work / n).exists()]
    if missing:
        return None, f"SKIP (fixture {', '.join(missing)} could not be built)"
    fx = runner.work / "fx"
    for out in case.outputs:
        shutil.rmtree(runner.work / out, ignore_errors=True)
    hidden = _hidden_files(fx)
    res = runner.run(case.args, ro=case.ro, timeout=case.timeout, measure_rss=case.rss, env=case.env)
    problems = []
    # A memory case also passes when the command streams the input within the RSS limit (exit 0).
    streamed = case.rss and res.rc == 0 and res.rss_mb is not None and res.rss_mb <= RSS_LIMIT_MB
    if res.rc != 2 and not streamed:
        problems.append(f"exit {res.rc}")
    if "Traceback" in res.out:
        problems.append("traceback")
    if not streamed and not any(n in res.out for n in case.names):
        problems.append(f"message names none of {', '.join(case.names)}")
    problems += [f"prints {f!r}" for f in case.forbid if f in res.out]
    problems += [f"left {o}" for o in case.outputs if (runner.work / o).exists()]
    problems += [f"{d} not empty" for d in case.stays_empty if any((runner.work / d).iterdir())]
    problems += [f"left {p.relative_to(runner.work)}" for p in sorted(_hidden_files(fx) - hidden)]
    if marker.exists():
        problems.append("PAYLOAD RAN")
    if case.rss and (res.rss_mb is None or res.rss_mb > RSS_LIMIT_MB):
        problems.append(f"max RSS {res.rss_mb:.0f} MB > {RSS_LIMIT_MB} MB" if res.rss_mb else "no RSS")
    if case.rss and res.rss_mb is not None:
        res.out = f"(max RSS {res.rss_mb:.0f} MB) " + res.out
    return res, "PASS" if not problems else "FAIL (" + "; ".join(problems) + ")"


# ------------------------------------------------------------------------------------------------
# Cases with their own rule (symlink, cache key, read-only store, cache orphans, SIGKILL)
# ------------------------------------------------------------------------------------------------

def case_s4(runner: Runner) -> tuple[str, Result | None, str]:
    """F17: a metrics.jsonl symlink planted in the run folder must not be appended through."""
    cmd = ["gan", "train", "--config", GAN_CONFIG, "--out", "fx/sg", "--no-db", *GAN]
    if runner.data is None:
        return display(cmd), None, "SKIP (needs FMLAB_DATA)"
    sg = runner.work / "fx/sg"
    sg.mkdir()
    (sg / "metrics.jsonl").symlink_to("../victim.txt")
    res = runner.run(cmd, timeout=runner.timeout * 3)
    grown = (runner.work / "fx/victim.txt").stat().st_size
    ok = grown == 0 and "Traceback" not in res.out
    return (f"mkdir fx/sg; ln -s ../victim.txt fx/sg/metrics.jsonl; {display(cmd)}", res,
            "PASS (victim.txt unchanged)" if ok else f"FAIL (victim.txt now {grown} bytes"
            + ("; traceback)" if "Traceback" in res.out else ")"))


def case_s10(runner: Runner) -> tuple[str, Result | None, str]:
    """F2: a cache hit must return the features a fresh extraction gives."""
    from safetensors.numpy import load_file

    base = [*FEAT, "--data", "npz:fx/good.npz"]
    a = [*base, "--out", "fx/s10/a.safetensors"]
    b = [*base, "--no-cache", "--out", "fx/s10/b.safetensors"]
    for args in (a, a, b):
        res = runner.run(args)
        if res.rc != 0:
            return display(a) + " (twice), then --no-cache", res, f"FAIL (exit {res.rc})"
    fa = load_file(str(runner.work / "fx/s10/a.safetensors"))["features"]
    fb = load_file(str(runner.work / "fx/s10/b.safetensors"))["features"]
    diff = float(np.abs(fa - fb).max()) if fa.shape == fb.shape else float("inf")
    res.out = f"max |cached - fresh| = {diff:.3g}"
    return (display(a) + " (twice), then with --no-cache; compare features", res,
            "PASS" if diff < 1e-4 else "FAIL (the cache served another network's features)")


def case_s11(runner: Runner) -> tuple[str, Result | None, str]:
    """F19: ``results show`` must not write into the file it reads."""
    args = ["results", "show", "--db", "fx/zero.db"]
    res = runner.run(args)
    size = (runner.work / "fx/zero.db").stat().st_size
    ok = size == 0 and "Traceback" not in res.out
    return (f": > fx/zero.db; {display(args)}", res,
            "PASS (fx/zero.db still 0 bytes)" if ok else f"FAIL (fx/zero.db is now {size} bytes)")


_F16_INJECT = """
import os, signal, sys
import safetensors.torch as st
orig, cache = st.save_file, os.environ["FMLAB_CACHE"]
def save_then_die(tensors, filename, metadata=None):
    orig(tensors, filename, metadata=metadata)
    if str(filename).startswith(cache):
        with open(filename, "r+b") as f:
            f.truncate(os.path.getsize(filename) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
st.save_file = save_then_die
from fmlab.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def case_f16(runner: Runner) -> tuple[str, Result | None, str]:
    """F16: a SIGKILL during a cache write leaves a temporary; a later run must clean it up."""
    args = [*FEAT, "--data", "npz:fx/good.npz", "--out", "fx/f16/f.safetensors"]
    cache = runner.work / "cache_f16"  # its own cache: an entry from another case would be a hit
    env = {"FMLAB_CACHE": str(cache)}
    cmd = [sys.executable, "-c", _F16_INJECT, *args]
    p = subprocess.run(cmd, cwd=runner.work, env={**runner.env, **env}, capture_output=True,
                       timeout=runner.timeout)
    orphans = [f for f in cache.rglob(".*") if f.is_file()]
    what = "SIGKILL inside the cache write (save_file patched), then " + display(args)
    if p.returncode != -signal.SIGKILL or not orphans:
        return what, None, f"SKIP (fault injection did not leave an orphan; exit {p.returncode})"
    old = time.time() - 3600  # the sweep may only take files older than a few minutes
    for f in orphans:
        os.utime(f, (old, old))
    res = runner.run(args, env=env)
    left = [f.name for f in orphans if f.exists()]
    if res.rc != 0:
        return what, res, f"FAIL (the rerun exited {res.rc})"
    return what, res, f"FAIL (orphan {left[0]} still there)" if left else "PASS (orphan removed)"


def _latest_step(run: Path) -> int | None:
    try:
        return int(json.loads((run / "checkpoints" / "latest.json").read_text()).get("step"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _eval_records(run: Path) -> int:
    try:
        return sum('"eval"' in line for line in (run / "metrics.jsonl").read_text().splitlines())
    except OSError:
        return 0


def case_f3(runner: Runner) -> tuple[str, Result | None, str]:
    """F3: SIGKILL during the final GAN evaluation; --resume must still write the evaluation."""
    args = ["gan", "train", "--config", GAN_CONFIG, "--out", "fx/k", "--no-db", "--set", "trainer.max_steps=60",
            "--set", "data.limit=1000", "--set", "eval.n=500", "--set", "trainer.checkpoint_every=10"]
    what = f"{display(args)} & kill -9 once latest.json says step 60; fmlab gan train --resume fx/k"
    if runner.data is None:
        return what, None, "SKIP (needs FMLAB_DATA)"
    run = runner.work / "fx/k"
    p = subprocess.Popen(runner.command(args), cwd=runner.work, env=runner.env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, preexec_fn=_limit_memory)
    deadline = time.time() + runner.timeout * 4
    while p.poll() is None and time.time() < deadline and _latest_step(run) != 60:
        time.sleep(0.05)
    evals_at_kill = _eval_records(run)
    if p.poll() is not None:
        return what, None, f"SKIP (the run ended before the kill, exit {p.returncode}; rerun the case)"
    p.send_signal(signal.SIGKILL)
    p.wait()
    if evals_at_kill:
        return what, None, "SKIP (the kill came after the final evaluation; rerun the case)"
    res = runner.run(["gan", "train", "--resume", "fx/k", "--no-db"], timeout=runner.timeout * 3)
    n = _eval_records(run)
    res.out = f"exit {res.rc}; eval records in metrics.jsonl after resume: {n}\n" + res.out
    return what, res, "PASS" if res.rc == 0 and n >= 1 else "FAIL (the final evaluation is missing)"


SPECIAL: list[tuple[str, str, Callable[[Runner], tuple[str, Result | None, str]]]] = [
    ("S4 / F17", "metrics.jsonl followed the symlink: victim.txt grew", case_s4),
    ("S10 / F2", "cache hit served another random network's features (max diff 148.8)", case_s10),
    ("S11 / F19", "0-byte file turned into a 16 KB SQLite database", case_s11),
    ("F16", "orphan .<key>.safetensors.<rand>.safetensors stays in the cache", case_f16),
    ("F3", "resume skipped the final evaluation: 0 eval records (2 of 3 kill trials)", case_f3),
]


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------

def _cell(text: str, width: int = 110) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= width else text[:width - 1] + "…"
    return text.replace("|", "\\|")


def build_fixtures(work: Path, data: Path | None, marker: Path) -> list[str]:
    fx = work / "fx"
    fx.mkdir(parents=True)
    (work / "configs").symlink_to(REPO / "configs")
    make_good(fx)
    make_text(fx)
    make_huge_and_bomb(fx)
    make_png_bomb(fx / "folder_bomb")
    make_evil(fx, marker)
    notes = []
    if data is not None:
        try:
            make_generator(fx, data)
        except Exception as e:  # noqa: BLE001 - reported in the table notes, the cases skip
            notes.append(f"fx/G.safetensors not built: {e}")
    return notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma list of case ids (prefixes), e.g. feat-16,S11,F3")
    ap.add_argument("--keep", type=Path, help="build fx/ here and keep it (must not exist)")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per command (default 90)")
    args = ap.parse_args(argv)
    data = Path(os.environ["FMLAB_DATA"]) if os.environ.get("FMLAB_DATA") else None
    work = args.keep or Path(tempfile.mkdtemp(prefix="fmlab-probe-"))
    if args.keep:
        work.mkdir(parents=True)
    marker = work / "PWNED_pickle"
    wanted = [w.strip() for w in args.only.split(",")] if args.only else None

    def selected(case_id: str) -> bool:
        return wanted is None or any(case_id.startswith(w) for w in wanted)

    rows: list[tuple[str, str, str, str, str]] = []
    try:
        notes = build_fixtures(work, data, marker)
        runner = Runner(work, args.timeout, data)
        ro_state = "run" if runner.ro_ok else f"skipped ({runner.ro_note})"
        if selected("S9") or data is not None:
            rows += _s9(runner, selected("S9"))
        for case in _cases():
            if selected(case.id):
                res, verdict = run_case(runner, case, marker)
                after = "" if res is None else f"{res.rc}, {res.first_line()}"
                shown = " ".join(f"{k}={v}" for k, v in case.env.items())
                rows.append((case.id, (shown + " " if shown else "") + display(case.args, case.ro),
                             case.before, after, verdict))
                print(f"{case.id}: {verdict}", file=sys.stderr, flush=True)
        for case_id, before, fn in SPECIAL:
            if selected(case_id):
                what, res, verdict = fn(runner)
                after = "" if res is None else f"{res.rc}, {res.first_line()}"
                rows.append((case_id, what, before, after, verdict))
                print(f"{case_id}: {verdict}", file=sys.stderr, flush=True)
        payload_ran = marker.exists()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("| case | command | before | after (exit, first line of stderr) | verdict |")
    print("|---|---|---|---|---|")
    for case_id, cmd, before, after, verdict in rows:
        print(f"| {case_id} | `{_cell(cmd, 160)}` | {_cell(before)} | {_cell(after)} | {_cell(verdict)} |")
    failed = sum(r[4].startswith("FAIL") for r in rows)
    ran = sum(not r[4].startswith("SKIP") for r in rows)
    print(f"\n{ran - failed} of {ran} cases pass; {len(rows) - ran} skipped; read-only cases: {ro_state}.")
    for note in notes:
        print(f"note: {note}")
    if payload_ran:
        print("WARNING: a pickle payload ran")
    return 0 if failed == 0 else 1


def _s9(runner: Runner, report: bool) -> list[tuple[str, str, str, str, str]]:
    """Build fx/ganrun (needed by the GAN cases); its --no-db run is case S9."""
    cmd = display(["gan", "train", "--config", GAN_CONFIG, *GAN, "--no-db", "--out", "fx/ganrun"])
    before = "--no-db wrote RUN_DIR/fmlab.db (7 rows)"
    if runner.data is None:
        return [("S9 / F4", cmd, before, "", "SKIP (needs FMLAB_DATA)")] if report else []
    res = make_ganrun(runner)
    print(f"S9 / F4: {res.verdict}", file=sys.stderr, flush=True)
    return [("S9 / F4", cmd, before, f"{res.rc}, {res.first_line()}", res.verdict)] if report else []


if __name__ == "__main__":
    sys.exit(main())
