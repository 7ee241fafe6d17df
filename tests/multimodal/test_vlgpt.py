"""VL-GPT (reduced): causal masks, the next-image regression target, the ablation weight, the unigram
baseline, and ``fmlab vlgpt`` end to end on a tiny npz source (CLI smoke, bad input, bit-identical resume)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from fmlab.cli.main import main
from fmlab.multimodal.vlgpt import VLGPT, VLGPTObjective, interleave
from fmlab.multimodal.vlgpt_text import BOI, EOS, PAD, WordVocab, unigram_perplexity
from fmlab.multimodal.vlgpt_tokenizer import ImageTokenizer
from tests.conftest import make_npz

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "vlgpt"
K, D = 3, 8


def _model(seed: int = 0) -> VLGPT:
    torch.manual_seed(seed)
    return VLGPT(14, K, D, width=16, layers=2, heads=2, max_len=16).eval()


def _captions() -> torch.Tensor:
    return torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, PAD], [10, EOS, PAD, PAD]])


@pytest.mark.parametrize("order", ["i2t", "t2i"])
def test_output_at_t_ignores_every_input_after_t(order):
    m = _model()
    s = interleave(_captions(), K, order)
    z = torch.randn(3, K, D)
    logits, img = m(s["ids"], z, s["image_pos"])
    t = 3
    ids2 = s["ids"].clone()
    ids2[:, t + 1:] = torch.randint(5, 14, ids2[:, t + 1:].shape)
    z2 = torch.where((s["image_pos"] > t)[..., None], torch.randn(3, K, D), z)
    logits2, img2 = m(ids2, z2, s["image_pos"])
    assert torch.allclose(logits[:, :t + 1], logits2[:, :t + 1], atol=1e-5)
    assert torch.allclose(img[:, :t + 1], img2[:, :t + 1], atol=1e-5)
    assert not torch.allclose(logits[:, t + 1:], logits2[:, t + 1:], atol=1e-3)  # the test can fail


def test_tokenizer_embedding_k_ignores_later_queries():
    from fmlab.models import create_backbone

    torch.manual_seed(0)
    tok = ImageTokenizer(create_backbone("resnet_cifar", depth=8, width=4, seed=0), 4, D, width=16,
                         layers=2, heads=2).eval()
    x = torch.randint(0, 255, (2, 12, 12), dtype=torch.uint8)
    a = tok(x)
    with torch.no_grad():
        tok.queries[2:] += torch.randn_like(tok.queries[2:])
    b = tok(x)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-5) and not torch.allclose(a[:, 2:], b[:, 2:], atol=1e-3)
    assert torch.allclose(a.mean(-1), torch.zeros(2, 4), atol=1e-5)  # layer-normalised targets


def test_interleave_layouts_and_text_targets():
    s = interleave(_captions(), K, "t2i")
    row = s["ids"][1].tolist()
    assert row[:4] == [1, 8, 9, BOI] and s["image_pos"][1].tolist() == [4, 5, 6]
    assert s["targets"][1].tolist()[:4] == [8, 9, BOI, PAD]  # BOI is predicted, image slots are not text
    s = interleave(_captions(), K, "i2t")
    assert s["image_pos"][0].tolist() == [1, 2, 3]
    assert s["targets"][0].tolist()[:K + 4] == [PAD] * K + [5, 6, 7, EOS]


def test_regression_target_is_the_next_image_embedding():
    """The objective's image loss equals MSE(prediction at slot position - 1, embedding of the slot),
    recomputed here from the raw sequences (image slots found by their layout, not by ``image_pos``)."""
    m = _model()
    caps, z = _captions(), torch.randn(3, K, D)
    obj = VLGPTObjective(m, caps, image_loss_weight=0.5)
    loss, logs = obj({"image_tokens": z, "caption_ids": torch.arange(3)})
    per_order = []
    for order in ("i2t", "t2i"):
        s = interleave(caps, K, order)
        with torch.no_grad():
            _, img = m(s["ids"], z, s["image_pos"])
        errs = []
        for b in range(3):
            first = 1 if order == "i2t" else s["ids"][b].tolist().index(BOI) + 1
            errs.append(((img[b, first - 1:first - 1 + K] - z[b]) ** 2).mean())
        per_order.append(torch.stack(errs).mean())
    assert math.isclose(float(logs["image_loss"]), float(torch.stack(per_order).mean()), rel_tol=1e-5)
    assert math.isclose(float(loss), float(logs["text_loss"] + 0.5 * logs["image_loss"]), rel_tol=1e-5)


def test_ablation_weight_removes_the_regression_term():
    m = _model()
    obj = VLGPTObjective(m, _captions(), image_loss_weight=0.0)
    loss, logs = obj({"image_tokens": torch.randn(3, K, D), "caption_ids": torch.arange(3)})
    loss.backward()
    assert float(loss) == float(logs["text_loss"]) and float(logs["image_loss"]) > 0
    assert m.img_head.weight.grad is None  # the image head learns nothing without the term


def test_generate_feeds_each_prediction_back():
    m = _model()
    caps = _captions()[:1]
    z = m.generate(caps)
    s = interleave(caps, K, "t2i")
    _, img = m(s["ids"], z, s["image_pos"])
    assert torch.allclose(img[0, s["image_pos"][0] - 1], z[0], atol=1e-5)


def test_unigram_perplexity_and_vocab_errors():
    from fmlab.errors import DataError

    v = WordVocab.from_captions(["a red 7", "a blue 1"])
    train = v.encode_batch(["a red 7", "a blue 1"])
    # counts: a 2, red 1, 7 1, blue 1, 1 1, EOS 2 -> 8 tokens + add-one over |V| = 10 ids
    p = {"a": 3 / 18, "7": 2 / 18, "<eos>": 3 / 18}
    want = math.exp(-(math.log(p["a"]) + math.log(p["7"]) + math.log(p["<eos>"])) / 3)
    assert math.isclose(unigram_perplexity(train, v.encode_batch(["a 7"]), v.size), want, rel_tol=1e-9)
    with pytest.raises(DataError, match="empty"):
        v.encode("  ")
    with pytest.raises(DataError, match="zebra"):
        v.encode("a zebra", strict=True)


# --------------------------------------------------------------------------- the CLI on a tiny source

TOK_SETS = ["tokenizer.tower=resnet_cifar", "tokenizer.tower_weights=null", "tokenizer.embed_dim=8",
            "tokenizer.width=16", "tokenizer.heads=2", "tokenizer.layers=1", "tokenizer.decoder_width=8"]
TINY = ["trainer.batch_size=8", "trainer.log_every=1", "data.limit=24"]


def _sets(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


def _data_sets(npz: Path) -> list[str]:
    return [f"data.source=npz:{npz}", "data.templates=[\"a photo of {}\", \"the {} picture\"]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vlgpt")
    npz = make_npz(tmp / "tiny.npz", n_train=40, n_test=12, hw=(12, 12), channels=None)
    tok = tmp / "tok"
    assert main(["vlgpt", "tokenizer", "--config", str(CONFIGS / "tokenizer_mnist.yaml"), "--out", str(tok),
                 *_sets(*TOK_SETS, *_data_sets(npz), *TINY, "trainer.max_steps=2")]) == 0
    return {"npz": npz, "tok": tok, "tmp": tmp}


def _train(runs, out: Path, *extra: str) -> int:
    return main(["vlgpt", "train", "--config", str(CONFIGS / "mnist.yaml"), "--out", str(out),
                 *_sets(f"tokenizer={runs['tok']}", *_data_sets(runs["npz"]), *TINY, "model.width=16",
                        "model.heads=2", "model.layers=1", *extra)])


def test_cli_smoke_train_caption_generate_eval(runs, tmp_path, capsys):
    out = tmp_path / "m"
    assert _train(runs, out, "trainer.max_steps=3") == 0
    info = json.loads((out / "vlgpt.json").read_text())
    assert info["vocabulary"] == ["a", "c0", "c1", "c2", "c3", "of", "photo", "picture", "the"]
    assert main(["vlgpt", "caption", "--model", str(out), "--limit", "2"]) == 0
    png = tmp_path / "g.png"
    assert main(["vlgpt", "generate", "--model", str(out), "--caption", "a photo of c1", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    js, sheet = tmp_path / "e.json", tmp_path / "sheet.png"
    assert main(["vlgpt", "eval", "--model", str(out), "--json", str(js), "--sheet", str(sheet)]) == 0
    res = json.loads(js.read_text())
    assert res["n_pairs"] == 12 and res["chance_class"] == 0.25 and res["caption_perplexity"] > 1
    assert sheet.read_bytes()[:4] == b"\x89PNG"


def test_bad_input_exits_2_naming_it(runs, tmp_path, capsys):
    assert _train(runs, tmp_path / "x", "objective.image_los=1") == 2
    assert "objective.image_los" in capsys.readouterr().err
    out = tmp_path / "m"
    assert _train(runs, out, "trainer.max_steps=1") == 0
    capsys.readouterr()
    assert main(["vlgpt", "generate", "--model", str(out), "--caption", " ", "--out", str(tmp_path / "g.png")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["vlgpt", "generate", "--model", str(out), "--caption", "a photo of zebra", "--out",
                 str(tmp_path / "g.png")]) == 2
    assert "zebra" in capsys.readouterr().err and not (tmp_path / "g.png").exists()
    assert main(["vlgpt", "eval", "--model", str(tmp_path)]) == 2
    assert "vlgpt.json" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["train", "tokenizer"])
def test_resume_is_bit_identical(runs, tmp_path, stage):
    """A run killed after its step-2 checkpoint and resumed ends with the straight 4-step run's weights."""
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    sets = ["trainer.checkpoint_every=2", "trainer.max_steps=4"]
    if stage == "train":
        assert _train(runs, straight, *sets) == 0
    else:
        assert main(["vlgpt", "tokenizer", "--config", str(CONFIGS / "tokenizer_mnist.yaml"), "--out",
                     str(straight), *_sets(*TOK_SETS, *_data_sets(runs["npz"]), *TINY, *sets)]) == 0
    name = "vlgpt.safetensors" if stage == "train" else "tokenizer.safetensors"
    shutil.copytree(straight, crashed)
    (crashed / name).unlink()
    (crashed / "checkpoints" / "latest.json").write_text(json.dumps(
        {"step": 2, "weights": "step-00000002.safetensors", "state": "step-00000002.state.pt"}))
    assert main(["vlgpt", stage, "--resume", str(crashed)]) == 0
    a, b = load_file(str(straight / name)), load_file(str(crashed / name))
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


def test_regression_loss_falls_only_with_its_weight(runs, tmp_path):
    """Training with lambda > 0 lowers the image loss; with lambda = 0 the image head stays at its init."""
    full, abl = tmp_path / "full", tmp_path / "abl"
    assert _train(runs, full, "trainer.max_steps=6", "optim.lr=0.01") == 0
    assert _train(runs, abl, "trainer.max_steps=6", "optim.lr=0.01", "objective.image_loss_weight=0") == 0
    a, b = load_file(str(full / "vlgpt.safetensors")), load_file(str(abl / "vlgpt.safetensors"))
    torch.manual_seed(0)  # the init of both runs (trainer.seed 0)
    init = VLGPT(len(json.loads((abl / "vlgpt.json").read_text())["vocabulary"]) + 5, 4, 8, 16, 1, 2, 48)
    assert torch.equal(b["model.img_head.weight"], init.img_head.weight.detach())
    assert not torch.equal(a["model.img_head.weight"], init.img_head.weight.detach())
    assert F.mse_loss(a["model.img_head.weight"], b["model.img_head.weight"]) > 0
