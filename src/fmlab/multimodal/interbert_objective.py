"""``loss.name: interbert`` — InterBERT pre-training (MSM + MRM + ITM) and ITM fine-tuning.

One step: the image tower's last feature map is pooled into ``grid x grid`` region features;
(1) a *masked* pass over the true pairs — contiguous word segments replaced by ``[MASK]`` and
``group x group`` blocks of regions zeroed — gives MSM (cross-entropy on the masked words) and
MRM (KL from the region's class distribution to the prediction); (2) a clean pass over the true
pairs, each image with a negative caption and each caption with a negative in-batch image gives
ITM (binary cross-entropy). A negative is never a true pair: a caption is a negative of an image
only when its *text* is none of that image's captions (canvas captions repeat across images).

Region targets: ``masks`` — for a source that renders instance masks (``canvas``), the area
share of each class (background + the object classes) inside the cell; ``head`` — the soft
class prediction of the frozen initial image tower's classifier head on the cell's features.

Hard negatives (``negatives: hard``): the dual encoder named by ``dual`` (a ``fmlab clip
train`` run) embeds every training image and caption once; an image's negative caption is drawn
from its top-``negatives_k`` non-matching captions, a caption's negative image is the batch's
most similar non-matching image. Saved with the run: ``interbert.safetensors`` (the fusion
encoder) + ``interbert.json``; ``encoder.safetensors`` stays the image-text model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.multimodal.interbert import (InterBertFusion, InterBertOptions, grid_regions,
                                        mask_region_groups, mask_words, zero_regions)
from fmlab.multimodal.objective import CLIP_OBJECTIVES
from fmlab.utils.io import sha256_file, write_json

FUSION_FILE, FUSION_META = "interbert.safetensors", "interbert.json"


def image_regions(model: nn.Module, images: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, grid², C) region features of uint8 (or preprocessed) images from the image tower.

    Examples:
        >>> from types import SimpleNamespace
        >>> from fmlab.models import create_backbone
        >>> tower = SimpleNamespace(image=create_backbone("resnet_cifar", depth=8, width=4, seed=0))
        >>> tuple(image_regions(tower, torch.zeros(2, 32, 32, 3, dtype=torch.uint8), 4).shape)
        (2, 16, 16)
    """
    trunk = model.image.trunk
    if not callable(getattr(trunk, "forward_map", None)):
        raise ModelError(f"{model.image.name} has no trunk.forward_map; InterBERT's grid regions "
                         "need a ResNet-style image tower")
    return grid_regions(trunk.forward_map(model.image.prepare(images)), grid)


def text_specials(tower: nn.Module) -> tuple[int, int, int]:
    """``[MASK]``, ``[CLS]`` and ``[SEP]`` ids of a MiniLM-style tower."""
    tok = getattr(tower, "tokenizer", None)
    ids = [getattr(tok, k, None) for k in ("mask_token_id", "cls_token_id", "sep_token_id")]
    if None in ids or not hasattr(tower, "token_embedding"):
        raise ModelError(f"text tower {getattr(tower, 'name', '?')} has no [MASK]/[CLS]/[SEP] "
                         "tokens; InterBERT needs a BERT-style tower (text:minilm)")
    return ids[0], ids[1], ids[2]


class InterBertObjective(nn.Module):
    """InterBERT's pre-training / fine-tuning loss over an :class:`ImageTextModel`'s towers.

    Args:
        model: the image-text model whose image tower gives regions and whose text tower gives
            the tokenizer and word embeddings.
        source: an :class:`~fmlab.multimodal.data.ImageTextPairs` training source.
        options: ``loss.interbert``.

    Raises:
        fmlab.errors.ConfigError: bad options, or an ``init`` run of another shape.
        fmlab.errors.DataError: a source without captions per image, or without region targets.
    """

    def __init__(self, model: nn.Module, source: Any, options: InterBertOptions) -> None:
        super().__init__()
        options.validate()
        split = getattr(source, "split", None)
        if not hasattr(split, "caption_image_index"):
            raise DataError("loss.name: interbert needs an image-text source (coco_mini, canvas?..., "
                            "csv:, jsonl:), not template captions")
        self.model, self.opts, self.split = model, options, split
        self.mask_id, self.cls_id, self.sep_id = text_specials(model.text)
        self.texts = texts = sorted(set(source.captions))
        where = {t: i for i, t in enumerate(texts)}
        self.caption_text = torch.tensor([where[c] for c in source.captions])
        tok = model.text.tokenize(texts)
        self.register_buffer("ids", tok["input_ids"], persistent=False)
        self.register_buffer("attn", tok["attention_mask"], persistent=False)
        # MSM's softmax runs over the word pieces of the training captions (no other word is ever
        # a target): on canvas ~50 pieces instead of MiniLM's 30k, the step's largest matmul
        vocab = torch.unique(tok["input_ids"][tok["attention_mask"].bool()])
        lookup = torch.full((int(vocab.max()) + 1,), -1, dtype=torch.long)
        lookup[vocab] = torch.arange(len(vocab))
        self.register_buffer("vocab", vocab, persistent=False)
        self.register_buffer("vocab_index", lookup, persistent=False)
        self.image_texts = [set() for _ in range(len(split.images))]
        for c, img in enumerate(split.caption_image_index):
            self.image_texts[int(img)].add(int(self.caption_text[c]))
        self.targets, n_classes = (self._region_targets(options.region_targets)
                                   if "mrm" in options.tasks else ("none", 1))
        region_dim = int(model.image.feature_dim)
        word_dim = int(model.text.token_embedding.weight.shape[1])
        max_len = int(self.ids.shape[1])
        if options.init:  # the pre-trained fusion's shape (its MRM head stays, unused by [itm])
            meta = read_interbert_meta(Path(options.init))
            n_classes, max_len = int(meta["region_classes"]), int(meta["max_len"])
            self.ids, self.attn = self.ids[:, :max_len], self.attn[:, :max_len]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            self.fusion = InterBertFusion(region_dim, word_dim, n_classes, max_len, options)
        self.dual_img = self.dual_txt = None
        self.register_buffer("region_cache", torch.zeros(0), persistent=False)
        if options.init:
            load_interbert_weights(self, Path(options.init))

    @property
    def encoder(self) -> nn.Module:
        return self.model

    def _region_targets(self, kind: str) -> tuple[str, int]:
        images = self.split.images
        has_masks = callable(getattr(images, "render", None)) and getattr(
            getattr(images, "kind", None), "name", None) == "canvas"
        if kind == "auto":
            kind = "masks" if has_masks else "head"
        if kind == "masks":
            if not has_masks:
                raise DataError("loss.interbert.region_targets: masks needs a canvas source")
            return kind, 1 + len(images.class_names)
        head = getattr(self.model.image, "head", None)
        if not isinstance(head, nn.Linear):
            raise DataError(f"loss.interbert.region_targets: head needs an image tower with a "
                            f"classifier head; {self.model.image.name} has none (use a canvas "
                            "source, or drop mrm from loss.interbert.tasks)")
        self._frozen = (copy.deepcopy(self.model.image).eval().requires_grad_(False),)
        return kind, int(head.out_features)

    def region_targets(self, rows: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(B, grid², classes) class distribution of every region (rows sum to 1)."""
        g = self.opts.grid
        if self.targets == "masks":
            from fmlab.data.synthetic.canvas import semantic_mask

            out = self.split.images.render(rows.cpu().numpy())
            sem = torch.as_tensor(semantic_mask(out["masks"], out["labels"]))
            onehot = F.one_hot(sem, self.fusion.mrm_head.out_features).permute(0, 3, 1, 2).float()
            return grid_regions(onehot, g).to(images.device)
        frozen = self._frozen[0].to(images.device)
        with torch.no_grad():
            cells = grid_regions(frozen.trunk.forward_map(frozen.prepare(images)), g)
            return frozen.head(cells).softmax(-1)

    def on_train_start(self, max_steps: int) -> None:
        if not any(p.requires_grad for p in self.model.image.parameters()):
            self.region_cache = self._all_regions()  # a locked tower: InterBERT's fixed region features
        if self.opts.negatives == "hard":
            self.dual_img, self.dual_txt = dual_embeddings(self.opts.dual, self.split, self.texts)

    @torch.no_grad()
    def _all_regions(self, chunk: int = 256) -> torch.Tensor:
        images, was = self.split.images, self.model.image.training
        self.model.image.eval()
        out = [image_regions(self.model, torch.from_numpy(images.get_batch(range(s, min(s + chunk, len(images))))),
                             self.opts.grid) for s in range(0, len(images), chunk)]
        self.model.image.train(was)
        return torch.cat(out)

    def words(self, text_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids (B, L), their embeddings (B, L, D) and padding (B, L) of unique texts."""
        ids, attn = self.ids[text_ids], self.attn[text_ids]
        length = int(attn.sum(1).max())
        ids, attn = ids[:, :length], attn[:, :length]
        return ids, self.model.text.token_embedding(ids), attn == 0

    def negatives(self, rows: torch.Tensor, text_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A negative text per image and a negative batch position per caption (-1: none).

        Returns:
            ``neg_text`` (B,) unique-text ids none of which is a caption of its image, and
            ``neg_image`` (B,) batch positions whose image does not have the caption's text.
        """
        rows_l, texts_l = rows.tolist(), text_ids.tolist()
        n_texts = int(self.ids.shape[0])
        neg_text = torch.empty(len(rows_l), dtype=torch.long)
        cand = None
        if self.dual_img is not None:
            sim = self.dual_img[rows.cpu()] @ self.dual_txt.T
            cand = sim.topk(min(self.opts.negatives_k + 8, n_texts), dim=1).indices.tolist()
        for b, r in enumerate(rows_l):
            pos = self.image_texts[r]
            pool = [t for t in cand[b] if t not in pos][: self.opts.negatives_k] if cand else []
            if pool:
                neg_text[b] = pool[int(torch.randint(len(pool), (1,)))]
                continue
            while True:  # random: rejection (an image has few captions among many)
                t = int(torch.randint(n_texts, (1,)))
                if t not in pos:
                    neg_text[b] = t
                    break
        ok = torch.tensor([[t not in self.image_texts[r] for r in rows_l] for t in texts_l])
        if self.dual_img is not None:
            score = self.dual_txt[text_ids.cpu()] @ self.dual_img[rows.cpu()].T
        else:
            score = torch.rand(ok.shape)
        score = score.masked_fill(~ok, float("-inf"))
        neg_image = torch.where(ok.any(1), score.argmax(1), torch.full_like(score[:, 0], -1).long())
        return neg_text, neg_image

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        rows = batch["labels"]
        text_ids = self.caption_text[batch["caption_ids"].cpu()].to(rows.device)
        if self.region_cache.numel():
            regions = self.region_cache[rows]
        else:
            regions = image_regions(self.model, batch["images"], self.opts.grid)
        ids, words, pad = self.words(text_ids)
        logs: dict[str, torch.Tensor] = {}
        loss = regions.new_zeros(())
        if "msm" in self.opts.tasks or "mrm" in self.opts.tasks:
            loss = loss + self._masked_losses(rows, batch["images"], regions, ids, pad, logs)
        if "itm" in self.opts.tasks:
            loss = loss + self.opts.itm_weight * self._itm_loss(rows, text_ids, regions, words, pad, logs)
        return loss, logs

    def _masked_losses(self, rows, images, regions, ids, pad, logs) -> torch.Tensor:
        o = self.opts
        valid = ~pad & (ids != self.cls_id) & (ids != self.sep_id)
        words_m = mask_words(valid.cpu(), o.word_mask_rate, o.span_mask, o.max_span).to(ids.device)
        regions_m = mask_region_groups(len(rows), o.grid, o.region_mask_rate, o.region_group).to(ids.device)
        emb = self.model.text.token_embedding(ids.masked_fill(words_m, self.mask_id))
        img, txt = self.fusion(zero_regions(regions, regions_m), emb, pad)
        loss = regions.new_zeros(())
        if "msm" in o.tasks:
            table = self.model.text.token_embedding.weight[self.vocab]
            target = self.vocab_index[ids[words_m]]
            msm = F.cross_entropy(self.fusion.msm_logits(txt[words_m], table), target)
            loss, logs["msm"] = loss + o.msm_weight * msm, msm.detach()
        if "mrm" in o.tasks:
            target = self.region_targets(rows, images)[regions_m]
            logp = self.fusion.mrm_head(img[regions_m]).log_softmax(-1)
            mrm = F.kl_div(logp, target, reduction="batchmean")
            loss, logs["mrm"] = loss + o.mrm_weight * mrm, mrm.detach()
        return loss

    def _itm_loss(self, rows, text_ids, regions, words, pad, logs) -> torch.Tensor:
        neg_text, neg_image = self.negatives(rows, text_ids)
        neg_text, neg_image = neg_text.to(regions.device), neg_image.to(regions.device)
        _, n_words, n_pad = self.words(neg_text)
        keep = neg_image >= 0
        length = max(words.shape[1], n_words.shape[1])
        words, n_words = _pad_to(words, length), _pad_to(n_words, length)
        pad, n_pad = _pad_to(pad, length, True), _pad_to(n_pad, length, True)
        reg = torch.cat([regions, regions, regions[neg_image[keep]]])
        wrd = torch.cat([words, n_words, words[keep]])
        msk = torch.cat([pad, n_pad, pad[keep]])
        label = torch.cat([torch.ones(len(rows)), torch.zeros(len(rows) + int(keep.sum()))]).to(reg.device)
        logits = self.fusion.itm(*self.fusion(reg, wrd, msk))
        itm = F.binary_cross_entropy_with_logits(logits, label)
        logs["itm"] = itm.detach()
        logs["itm_acc"] = ((logits > 0).float() == label).float().mean()
        return itm

    def export(self, folder: str | Path) -> Path:
        """Write the fusion encoder (``interbert.safetensors`` + ``interbert.json``) into a run."""
        from fmlab.engine.checkpoint import save_weights

        folder = Path(folder)
        path = save_weights(self.fusion, folder / FUSION_FILE, metadata={"writer": "fmlab.interbert"})
        f = self.fusion
        write_json(folder / FUSION_META, {
            "format": "fmlab.interbert", "version": 1, "options": self.opts.arch(),
            "region_dim": f.region_in[0].in_features, "word_dim": f.word_in[0].in_features,
            "region_classes": f.mrm_head.out_features, "max_len": f.max_len,
            "weights": FUSION_FILE, "weights_sha256": sha256_file(path)})
        return path


def _pad_to(x: torch.Tensor, length: int, value: bool | float = 0.0) -> torch.Tensor:
    extra = length - x.shape[1]
    if extra == 0:
        return x
    shape = (x.shape[0], extra, *x.shape[2:])
    return torch.cat([x, torch.full(shape, value, dtype=x.dtype, device=x.device)], 1)


@torch.no_grad()
def dual_embeddings(run: str | None, split: Any, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised dual-encoder embeddings of every image of ``split`` and of ``texts``."""
    from fmlab.multimodal.evaluate import embed_images, embed_texts
    from fmlab.multimodal.io import load_image_text_model

    dual = load_image_text_model(str(run))
    return embed_images(dual.encode_image, split.images), embed_texts(dual.encode_text, texts)


def load_interbert_weights(obj: InterBertObjective, run: Path) -> None:
    """Start from a pre-trained InterBERT run: its image-text model and its fusion encoder."""
    from fmlab.models.backbone import load_weights_file

    meta = read_interbert_meta(run)
    for key, value in obj.opts.arch().items():
        if meta["options"].get(key) != value:
            raise ConfigError(f"loss.interbert.{key}: {value!r} but the init run {run} has "
                              f"{meta['options'].get(key)!r}")
    for module, file in ((obj.model, run / "encoder.safetensors"), (obj.fusion, run / FUSION_FILE)):
        sd = load_weights_file(file)
        try:
            module.load_state_dict(sd, strict=False) if module is obj.model else module.load_state_dict(sd)
        except RuntimeError as e:
            raise ModelError(f"{file} does not fit this model: {str(e).splitlines()[0]}") from None


def read_interbert_meta(run: Path) -> dict:
    """``interbert.json`` of a run (ModelError naming the folder when it is not one)."""
    import json

    path = Path(run) / FUSION_META
    if not path.is_file():
        raise ModelError(f"{run}: no {FUSION_META}; not a run of fmlab clip train with loss.name: interbert")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: not JSON ({e})") from None


def _factory(model: nn.Module, source: Any, loss_cfg: Any) -> InterBertObjective:
    return InterBertObjective(model, source, loss_cfg.interbert)


CLIP_OBJECTIVES.add("interbert", _factory)
