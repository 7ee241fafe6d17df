"""`fmlab adapt meta-train` then `fmlab adapt --methods gram --meta`: the folder's contents, the
sweep beside CoOp, exact resume, and the refusals (test-split overlap, missing --meta)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fmlab.cli.main import main
from tests.conftest import make_npz

WORDS = ["red", "blue", "small", "large", "cat", "dog", "car", "ship", "field", "sea"]


def pairs_jsonl(folder, images: np.ndarray, seed: int = 0):
    """An image-text source of ``images`` (PNG, lossless) with random three-word captions."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i}.png")
        recs.append({"image": f"{i}.png", "caption": " ".join(rng.choice(WORDS, 3))})
    (folder / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    return f"jsonl:{folder / 'pairs.jsonl'}"


SMOKE = ["--set", "trainer.max_steps=3", "--set", "trainer.batch_size=2", "--set",
         "trainer.checkpoint_every=1", "--set", "meta.n_domains=2", "--set",
         "meta.classes_per_domain=3", "--set", "meta.n_way=2", "--set", "meta.shots=2",
         "--set", "trainer.log_every=1", "--set", "schedule.warmup_steps=0",
         "--set", "data.split=train"]


@pytest.fixture(scope="module")
def meta_run(saved_clip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gram")
    rng = np.random.default_rng(1)
    src = pairs_jsonl(tmp / "pairs", rng.integers(0, 255, (24, 16, 16, 3), dtype=np.uint8))
    out = tmp / "meta"
    assert main(["adapt", "meta-train", "--clip-model", str(saved_clip), "--data", src,
                 "--out", str(out), *SMOKE]) == 0
    return tmp, src, out


def test_meta_train_writes_phi_psi_hashes_and_resumes_exactly(meta_run, saved_clip, tmp_path):
    tmp, src, out = meta_run
    info = json.loads((out / "gram_meta.json").read_text())
    assert info["steps"] == 3 and info["n_pairs"] == info["n_images"] == 24 and info["n_pseudo_classes"] == 6
    assert info["n_ctx"] == 4 and len(json.loads((out / "image_hashes.json").read_text())) == 24
    # as if killed after the step-2 checkpoint: rewind the pointer, drop the outputs, resume
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    for f in ("gram_meta.safetensors", "gram_meta.json", "image_hashes.json"):
        (crashed / f).unlink()
    pointer = crashed / "run" / "checkpoints" / "latest.json"
    ptr = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({k: v.replace("00000003", "00000002") if isinstance(v, str) else v
                                   for k, v in ptr.items()} | {"step": 2}))
    assert main(["adapt", "meta-train", "--clip-model", str(saved_clip), "--data", src, *SMOKE,
                 "--out", str(crashed), "--resume"]) == 0
    assert json.loads((crashed / "gram_meta.json").read_text())["steps"] == 3
    assert (crashed / "gram_meta.safetensors").read_bytes() == (out / "gram_meta.safetensors").read_bytes()


def test_gram_in_the_adapt_sweep_and_its_refusals(meta_run, saved_clip, tmp_path, capsys):
    tmp, src, out = meta_run
    npz = make_npz(tmp_path / "d.npz", n_train=40, n_test=12, n_classes=4, hw=(16, 16))
    base = ["adapt", "--clip-model", str(saved_clip), "--data", f"npz:{npz}", "--shots", "2",
            "--seeds", "1", "--no-db"]
    assert main([*base, "--methods", "coop_photo,gram", "--meta", str(out), "--out",
                 str(tmp_path / "run")]) == 0
    recs = json.loads((tmp_path / "run" / "results.json").read_text())
    assert sorted(r["method"] for r in recs) == ["coop_photo", "gram"]
    gram = next(r for r in recs if r["method"] == "gram")
    assert gram["hyperparameters"]["meta"] == str(out) and gram["protocol"]["meta"] == str(out)
    assert main([*base, "--methods", "gram", "--out", str(tmp_path / "o2")]) == 2
    assert "--meta META_DIR" in capsys.readouterr().err
    # meta-training images that include two test images are refused, naming the overlap
    test_images = np.load(npz)["x_test"]
    rng = np.random.default_rng(2)
    mixed = np.concatenate([test_images[[3, 7]], rng.integers(0, 255, (22, 16, 16, 3), dtype=np.uint8)])
    leak_src = pairs_jsonl(tmp_path / "leak", mixed)
    leak = tmp_path / "leakmeta"
    assert main(["adapt", "meta-train", "--clip-model", str(saved_clip), "--data", leak_src,
                 "--out", str(leak), *SMOKE]) == 0
    capsys.readouterr()
    assert main([*base, "--methods", "gram", "--meta", str(leak), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "2 image(s) of the" in err and "test index 3" in err and "Traceback" not in err
