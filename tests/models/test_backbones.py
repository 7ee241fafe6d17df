import numpy as np
import pytest
import torch

from fmlab.errors import ModelError
from fmlab.models import PreprocessSpec, create_backbone
from fmlab.models.backbone import load_weights_file


def test_preprocess_grey_rgb_resize():
    rgb = PreprocessSpec((32, 32), 3, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    grey = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    out = rgb(grey)
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out, torch.ones_like(out))
    g = PreprocessSpec((16, 16), 1, (0.0,), (1.0,), "bilinear")
    col = torch.zeros((1, 16, 16, 3), dtype=torch.uint8)
    col[..., 1] = 255  # pure green -> luma 0.587
    assert torch.allclose(g(col), torch.full((1, 1, 16, 16), 0.587), atol=1e-6)
    crop = PreprocessSpec((8, 8), 3, resize="shorter_center_crop_bicubic")
    assert crop(torch.zeros((1, 10, 20, 3), dtype=torch.uint8)).shape == (1, 3, 8, 8)


def test_preprocess_matches_pil_bilinear_upsampling():
    # LeNet's checkpoint was trained on PIL-bilinear 28->32 resizes; ours must agree closely.
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(img).resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255
    ours = PreprocessSpec((32, 32), 1, (0.0,), (1.0,), "bilinear")(torch.from_numpy(img[None]))[0, 0]
    assert np.abs(ours.numpy() - pil).mean() < 2 / 255


def test_resnet_cifar_shapes_and_widths():
    bb = create_backbone("resnet20_cifar")
    x = torch.randint(0, 255, (2, 32, 32, 3), dtype=torch.uint8)
    assert bb.encode(x).shape == (2, 64) and bb(x).shape == (2, 10)
    assert sum(p.numel() for p in bb.parameters()) == 269722
    wide = create_backbone("resnet_cifar", depth=14, width=32)
    assert wide.encode(x).shape == (2, 128)
    with pytest.raises(ValueError, match="6n\\+2"):
        create_backbone("resnet_cifar", depth=21)


def test_every_backbone_accepts_every_image_layout():
    lenet = create_backbone("lenet5_mnist")
    resnet = create_backbone("resnet20_cifar")
    for imgs in (torch.zeros((2, 28, 28), dtype=torch.uint8), torch.zeros((2, 32, 32, 3), dtype=torch.uint8),
                 torch.zeros((2, 40, 40, 1), dtype=torch.uint8)):
        assert lenet.encode(imgs).shape == (2, 84)
        assert resnet.encode(imgs).shape == (2, 64)


def test_weights_roundtrip_safetensors(tmp_path):
    from safetensors.torch import save_file

    a = create_backbone("resnet20_cifar")
    save_file({k: v.contiguous() for k, v in a.state_dict().items()}, str(tmp_path / "w.safetensors"))
    b = create_backbone("resnet20_cifar", weights=tmp_path / "w.safetensors")
    x = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    assert torch.equal(a.eval()(x), b(x)) and len(b.weights_sha256) == 64
    # an encoder exported alone (trunk keys, no head) also loads
    save_file({k: v.contiguous() for k, v in a.trunk.state_dict().items()}, str(tmp_path / "t.safetensors"))
    c = create_backbone("resnet20_cifar", weights=tmp_path / "t.safetensors")
    assert torch.equal(a.encode(x), c.encode(x))


def test_bad_weights(tmp_path):
    with pytest.raises(ModelError, match="weights file not found"):
        create_backbone("resnet20_cifar", weights=tmp_path / "none.th")
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.th")
    with pytest.raises(ModelError, match="do not fit the trunk"):
        create_backbone("resnet20_cifar", weights=tmp_path / "bad.th")
    (tmp_path / "junk.th").write_bytes(b"junk")
    with pytest.raises(ModelError, match="cannot read weights"):
        load_weights_file(tmp_path / "junk.th")
    with pytest.raises(Exception, match="unknown backbone 'resnet99'"):
        create_backbone("resnet99")


def test_pretrained_heads_reach_reported_accuracy(data_root):
    """Weights and preprocessing are right: the heads score as their PROVENANCE files say.

    LeNet-5 on the whole MNIST test set; ResNet-20 on a seeded random 2,000 of the CIFAR-10 test
    images (binomial std 0.009 around 0.8103; the whole set is the slow test below)."""
    from fmlab.data import open_source
    from fmlab.data.sources import SubsetSplit
    from fmlab.evaluate import classify_accuracy

    w = data_root / "weights"
    lenet = create_backbone("lenet5_mnist", weights=w / "mnist_small" / "lenet_epoch=12_test_acc=0.991.pth")
    acc = classify_accuracy(lenet, open_source("mnist", data_root).split("test"))["accuracy"]
    assert abs(acc - 0.9908) < 0.002
    r20 = create_backbone("resnet20_cifar", weights=w / "resnet_cifar10" / "resnet20-12fca82f.th")
    test = open_source("cifar10", data_root).split("test")
    sub = SubsetSplit(test, np.random.default_rng(0).choice(len(test), 2000, replace=False))
    acc = classify_accuracy(r20, sub)["accuracy"]
    assert abs(acc - 0.8103) < 0.03


@pytest.mark.slow
def test_resnet20_full_cifar10_test(data_root):
    from fmlab.data import open_source
    from fmlab.evaluate import classify_accuracy

    r20 = create_backbone("resnet20_cifar", weights=data_root / "weights" / "resnet_cifar10" / "resnet20-12fca82f.th")
    acc = classify_accuracy(r20, open_source("cifar10", data_root).split("test"))["accuracy"]
    assert abs(acc - 0.8103) < 0.003


def test_timm_and_open_clip_backbones():
    vit = create_backbone("timm:vit_tiny_patch16_224", img_size=32, patch_size=4)
    assert vit.encode(torch.zeros((1, 32, 32, 3), dtype=torch.uint8)).shape == (1, vit.feature_dim)
    oc = create_backbone("open_clip:RN50")
    assert oc.preprocess.input_size == (224, 224) and oc.feature_dim == 1024


def test_minilm_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    enc = create_backbone("text:minilm")
    from fmlab.models.text import minilm_model_dir

    ref = st.SentenceTransformer(str(minilm_model_dir()), device="cpu")
    texts = ["a photo of a cat.", "a small red car parked on the street"]
    ours = torch.nn.functional.normalize(enc.encode(texts), dim=-1)
    theirs = torch.as_tensor(ref.encode(texts, normalize_embeddings=True))
    assert enc.feature_dim == 384 and torch.allclose(ours, theirs, atol=1e-5)


def test_seed_builds_one_network_and_leaves_the_global_rng_alone():
    from fmlab.models.backbone import state_sha256

    torch.manual_seed(123)
    rng = torch.get_rng_state()
    a = create_backbone("resnet20_cifar", seed=0)
    assert torch.equal(torch.get_rng_state(), rng)  # built under a forked RNG
    b = create_backbone("resnet20_cifar", seed=0)
    c = create_backbone("resnet20_cifar", seed=1)
    assert state_sha256(a) == state_sha256(b) != state_sha256(c)
    assert a.init_seed == 0 and c.init_seed == 1
    # seed=None keeps the global-RNG behaviour pre-training relies on (trainer.seed seeds it)
    torch.manual_seed(5)
    d = create_backbone("resnet20_cifar")
    torch.manual_seed(5)
    e = create_backbone("resnet20_cifar")
    assert state_sha256(d) == state_sha256(e) and d.init_seed is None
    with pytest.raises(ModelError, match="seed: -1"):
        create_backbone("resnet20_cifar", seed=-1)


def test_seed_is_the_same_network_in_another_process():
    import subprocess
    import sys

    from fmlab.models.backbone import state_sha256

    code = ("from fmlab.models import create_backbone; from fmlab.models.backbone import state_sha256; "
            "print(state_sha256(create_backbone('lenet5_mnist', seed=7)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": __import__("os").pathsep.join(sys.path)})
    assert out.stdout.strip() == state_sha256(create_backbone("lenet5_mnist", seed=7))


def test_seed_recorded_by_protocol_only_without_weights(tmp_path):
    from safetensors.torch import save_file

    from fmlab.results import Protocol

    bb = create_backbone("lenet5_mnist", seed=2)
    assert Protocol.of("npz:x", "test", backbone=bb).fields["init_seed"] == 2
    w = tmp_path / "w.safetensors"
    save_file({f"trunk.{k}": v for k, v in bb.trunk.state_dict().items()}, str(w))
    loaded = create_backbone("lenet5_mnist", weights=w, seed=2)
    assert "init_seed" not in Protocol.of("npz:x", "test", backbone=loaded).fields


def test_malicious_torch_file_is_refused_in_one_line(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, evil)
    with pytest.raises(ModelError) as e:
        create_backbone("resnet20_cifar", weights=evil)
    msg = str(e.value)
    assert "\n" not in msg and str(evil) in msg and "pickled code" in msg and "weights_only=False" not in msg
    assert not (tmp_path / "PWNED").exists()


def test_preprocess_refuses_images_without_pixels():
    """Probe F11: (N, 0, 0, 3) images reached torch's interpolate and gave a traceback."""
    spec = PreprocessSpec((32, 32), 3)
    with pytest.raises(Exception, match="height and width must be >= 1") as e:
        spec(torch.zeros((2, 0, 0, 3), dtype=torch.uint8))
    from fmlab.errors import DataError

    assert isinstance(e.value, DataError)
