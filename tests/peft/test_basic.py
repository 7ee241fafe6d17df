"""full / linear / bitfit: what they train, counted by hand on a tiny net; option and name errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fmlab.peft as fp
from fmlab.errors import ConfigError, FmlabError

from .nets import TinyAttnNet, make

# TinyConvNet, by hand: conv1 3·8·9 + 8, bn1 8 + 8, conv2 8·8·9 (no bias), fc 8·16 + 16, head 16·3 + 3
CONV1, BN1, CONV2, FC, HEAD = 216 + 8, 16, 576, 128 + 16, 48 + 3


def _trainable_names(m: nn.Module) -> set[str]:
    return {n for n, p in m.named_parameters() if p.requires_grad}


def test_full_counts_everything_or_the_targets():
    assert fp.trainable_parameters(fp.apply(make(), "full")) == CONV1 + BN1 + CONV2 + FC + HEAD
    m = fp.apply(make(), "full", targets=["fc", "bn1"])
    assert fp.trainable_parameters(m) == FC + BN1
    assert _trainable_names(m) == {"fc.weight", "fc.bias", "bn1.weight", "bn1.bias"}


def test_linear_trains_the_head_only():
    m = fp.apply(make(), "linear")
    assert _trainable_names(m) == {"head.weight", "head.bias"}
    assert fp.trainable_parameters(m) == HEAD
    m = fp.apply(make(), "linear", head="fc")
    assert fp.trainable_parameters(m) == FC


def test_linear_without_a_head_module_says_so():
    with pytest.raises(ConfigError, match="no module named 'head'"):
        fp.apply(nn.Sequential(nn.Linear(2, 2)), "linear")
    with pytest.raises(ConfigError, match="takes no targets"):
        fp.apply(make(), "linear", targets="fc")


def test_bitfit_biases_and_norm_parameters():
    m = fp.apply(make(), "bitfit")
    assert _trainable_names(m) == {"conv1.bias", "bn1.weight", "bn1.bias", "fc.bias", "head.bias"}
    assert fp.trainable_parameters(m) == 8 + 16 + 16 + 3
    assert fp.trainable_parameters(fp.apply(make(), "bitfit", targets="fc")) == 16
    # a head trains in full on top of the method; its bias is not counted twice
    assert fp.trainable_parameters(fp.apply(make(), "bitfit", head="head")) == 8 + 16 + 16 + HEAD


def test_bitfit_on_attention_counts_in_proj_bias_and_layernorm():
    m = fp.apply(make(TinyAttnNet), "bitfit")
    names = _trainable_names(m)
    assert {"attn.in_proj_bias", "attn.out_proj.bias", "norm.weight", "norm.bias"} <= names
    assert "attn.in_proj_weight" not in names
    expect = sum(p.numel() for n, p in m.named_parameters() if n in names)
    assert expect == 8 + 24 + 8 + 16 + 12 + 3


@pytest.mark.parametrize("method", ["full", "linear", "bitfit"])
def test_baselines_leave_outputs_unchanged(method):
    base = make()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fp.apply(make(), method)(x), base(x), rtol=0, atol=1e-6)


def test_unknown_option_and_method_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown option 'rr' for peft method 'lora'.*\br\b"):
        fp.apply(make(), "lora", rr=8)
    with pytest.raises(ConfigError, match=r"unknown peft method 'loar'.*lora"):
        fp.apply(make(), "loar")
    with pytest.raises(ConfigError, match="r must be a positive integer"):
        fp.apply(make(), "lora", r=0)
    assert issubclass(ConfigError, FmlabError)


def test_registry_lists_every_method():
    assert set(fp.METHODS.names()) >= {"full", "linear", "bitfit", "lora", "svfit", "pela", "vpt"}


def test_trainable_parameters_counts_shared_tensors_once():
    lin = nn.Linear(4, 4)
    tied = nn.Sequential(lin, nn.ReLU(), lin)
    assert fp.trainable_parameters(tied) == 20


def test_targets_inside_the_head_are_refused():
    with pytest.raises(ConfigError, match="target 'head' is .* a head module"):
        fp.apply(make(), "lora", targets=["fc", "head"], head="head")
