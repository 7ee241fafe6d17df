"""Name patterns: fnmatch on full names, ``re:`` regexes, errors that name the pattern."""

from __future__ import annotations

import pytest
from torch import nn

import fmlab.peft as fp
from fmlab.errors import ConfigError
from fmlab.peft.targets import select_modules

from .nets import TinyConvNet, make


def _is_linear(_n: str, m: nn.Module) -> bool:
    return isinstance(m, nn.Linear)


def test_fnmatch_matches_whole_dotted_names():
    m = make()
    assert select_modules(m, "conv*") == ["conv1", "conv2"]
    assert select_modules(m, ["fc", "conv2"]) == ["conv2", "fc"]  # named_modules order
    assert select_modules(m, "*", _is_linear, kind="Linear") == ["fc", "head"]
    nested = nn.Sequential(make(), make())
    assert select_modules(nested, "*conv1") == ["0.conv1", "1.conv1"]
    assert select_modules(nested, "1.*", _is_linear) == ["1.fc", "1.head"]


def test_regex_patterns_use_fullmatch():
    m = make()
    assert select_modules(m, r"re:conv\d") == ["conv1", "conv2"]
    assert select_modules(m, r"re:(fc|head)") == ["fc", "head"]
    with pytest.raises(ConfigError, match=r"re:onv1"):
        select_modules(m, "re:onv1")  # a search would match, fullmatch does not


def test_pattern_matching_nothing_names_the_pattern():
    m = make()
    with pytest.raises(ConfigError, match=r"'blocks\.\*' matches no module"):
        fp.apply(m, "lora", targets=["fc", "blocks.*"])


def test_pattern_matching_only_unsupported_types_names_them():
    with pytest.raises(ConfigError, match=r"'bn1'.*BatchNorm2d"):
        fp.apply(make(), "svfit", targets="bn1")


def test_bad_regex_is_a_config_error():
    with pytest.raises(ConfigError, match="invalid regular expression"):
        select_modules(make(), "re:(")


def test_default_targets_skip_the_head_and_head_patterns():
    m = fp.apply(make(), "lora", r=2)
    assert fp.adapter_stages(m)[0]["targets"] == ["conv1", "conv2", "fc"]
    m = fp.apply(make(), "lora", r=2, head="fc")
    assert fp.adapter_stages(m)[0]["targets"] == ["conv1", "conv2"]
    assert isinstance(TinyConvNet().head, nn.Linear)
