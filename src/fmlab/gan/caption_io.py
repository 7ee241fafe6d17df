"""Caption generators in and out: export/reload, sampling from sentence embeddings, and the
caption sheet (each caption drawn under the images generated from it).

A caption generator is saved like any fmlab generator (``generator.safetensors`` +
``generator.json``, no pickles), with a ``caption`` block in the JSON — the base architecture's
registry name and kwargs, the condition sizes, the text encoder, and the training binner's
thresholds (so evaluation captions and attribute checks use the training terciles).
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.gan.caption_cond import CaptionGenerator
from fmlab.gan.io import GENERATOR_JSON, GENERATOR_WEIGHTS
from fmlab.gan.nets import create_generator, load_weights
from fmlab.utils.io import atomic_write, sha256_file, write_json

__all__ = ["caption_sheet", "export_caption_generator", "generate_from_embeddings",
           "is_caption_generator", "load_caption_generator", "read_caption_file"]


def export_caption_generator(G: CaptionGenerator, base_spec: dict[str, Any],
                             caption: dict[str, Any], run_dir: str | os.PathLike,
                             **meta: Any) -> Path:
    """Write ``generator.safetensors`` + ``generator.json`` (with the ``caption`` block)."""
    from fmlab.engine.checkpoint import save_weights

    run_dir = Path(run_dir)
    path = save_weights(G, run_dir / GENERATOR_WEIGHTS,
                        metadata={"arch": base_spec["arch"], "writer": "fmlab.gan.caption"})
    write_json(run_dir / GENERATOR_JSON, {
        "arch": base_spec["arch"], "kwargs": base_spec["kwargs"], "weights": path.name,
        "weights_sha256": sha256_file(path),
        "caption": {**caption, "e_dim": G.project.e_dim, "c_dim": G.project.c_dim,
                    "z_dim": G.z_dim}, **meta})
    return path


def _json_of(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    return p / GENERATOR_JSON if p.is_dir() else (p if p.suffix == ".json" else p.with_suffix(".json"))


def is_caption_generator(path: str | os.PathLike) -> bool:
    """True when ``path`` (run dir, .json or .safetensors) describes a caption generator."""
    js = _json_of(path)
    if not js.is_file():
        return False
    try:
        return "caption" in json.loads(js.read_text())
    except (OSError, ValueError):
        return False


def load_caption_generator(path: str | os.PathLike) -> tuple[CaptionGenerator, dict[str, Any]]:
    """The caption generator (eval mode) and its description from a run dir or its files."""
    js = _json_of(path)
    if not js.is_file():
        raise ModelError(f"{path}: no {GENERATOR_JSON} describing a caption generator")
    try:
        info = json.loads(js.read_text())
        cap = info["caption"]
        base = create_generator(info["arch"], **info["kwargs"])
        G = CaptionGenerator(base, int(cap["e_dim"]), int(cap["c_dim"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{js}: not a caption generator description ({e})") from None
    load_weights(G, js.parent / info.get("weights", GENERATOR_WEIGHTS))
    return G.eval(), info


@torch.no_grad()
def generate_from_embeddings(G: CaptionGenerator, emb: np.ndarray | torch.Tensor, seed: int = 0,
                             batch_size: int = 500) -> np.ndarray:
    """One sample per caption embedding as uint8 (N, H, W) grey / (N, H, W, 3); z from ``seed``."""
    from fmlab.metrics import to_uint8

    e = torch.as_tensor(np.asarray(emb, dtype=np.float32))
    gen = torch.Generator().manual_seed(int(seed))
    was = G.training
    G.eval()
    out = []
    try:
        for i in range(0, len(e), batch_size):
            eb = e[i:i + batch_size]
            out.append(to_uint8(G(G.sample_z(len(eb), gen), eb).permute(0, 2, 3, 1)))
    finally:
        G.train(was)
    images = np.concatenate(out)
    return images[..., 0] if images.shape[-1] == 1 else images


def read_caption_file(path: str | os.PathLike) -> list[str]:
    """Non-empty lines of a UTF-8 text file (a DataError names a missing or non-UTF-8 file)."""
    p = Path(path).expanduser()
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"--captions: file not found: {p}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"--captions: {p} is not UTF-8 text (byte {e.start})") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"--captions: {p} holds no caption")
    return lines


def caption_sheet(images: np.ndarray, captions: list[str], per_caption: int,
                  path: str | os.PathLike, scale: int = 2, pad: int = 4) -> np.ndarray:
    """A PNG with one block per caption: its ``per_caption`` images in a row, the text below.

    Args:
        images: uint8 (len(captions)·per_caption, H, W[, C]), caption-major.
        captions: the sentences.
        per_caption: images per caption.
        path: the PNG file (written atomically).
        scale: nearest-neighbour upscaling of each image (28 px digits are small).
        pad: pixels between images and blocks.

    Returns:
        The sheet as (H, W) or (H, W, 3) uint8.
    """
    if len(images) != len(captions) * per_caption:
        raise ConfigError(f"caption sheet: {len(images)} images for {len(captions)} captions × "
                          f"{per_caption}")
    h, w = images.shape[1:3]
    side_h, side_w = h * scale, w * scale
    width = per_caption * (side_w + pad) + pad
    font = ImageFont.load_default()
    chars = max(12, width // 6)
    wrapped = [textwrap.wrap(c, chars) or [""] for c in captions]
    line_h = 12
    heights = [side_h + pad + line_h * len(wr) + pad for wr in wrapped]
    mode = "L" if images.ndim == 3 else "RGB"
    sheet = Image.new(mode, (width, sum(heights) + pad), color=255)
    draw = ImageDraw.Draw(sheet)
    y = pad
    for k, (wr, bh) in enumerate(zip(wrapped, heights)):
        for j in range(per_caption):
            img = Image.fromarray(images[k * per_caption + j]).resize((side_w, side_h),
                                                                     Image.NEAREST)
            sheet.paste(img, (pad + j * (side_w + pad), y))
        for i, line in enumerate(wr):
            draw.text((pad, y + side_h + pad // 2 + i * line_h), line, fill=0, font=font)
        y += bh
    with atomic_write(path, "wb") as f:
        sheet.save(f, format="PNG")
    return np.asarray(sheet)

