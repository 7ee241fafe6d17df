"""fmlab.multimodal — image-text towers, CLIP/SigLIP/multi-positive losses, zero-shot and
retrieval evaluation, prompt learning (CoOp lives in :mod:`fmlab.adapt.coop`), and image-text
models beyond whole-image classification (issue 21, library pieces so far): DenseCLIP
(:mod:`~fmlab.multimodal.dense`), DITO-style region-text pre-training
(:mod:`~fmlab.multimodal.region`, :mod:`~fmlab.multimodal.region_eval`), X-CLIP (:mod:`~fmlab.multimodal.video`) and DPTR's text-only
decoder pre-training (:mod:`~fmlab.multimodal.textdecoder`, :mod:`~fmlab.multimodal.dptr`).

Names load on first use so ``import fmlab.multimodal`` stays cheap.
"""

from __future__ import annotations

from fmlab.utils.lazy import lazy_exports

_EXPORTS = {
    "DenseCLIP": "dense", "DenseCLIPObjective": "dense_objective", "DenseImageEncoder": "dense",
    "ClassPrompts": "dense", "ContextDecoder": "dense", "score_map": "dense",
    "XCLIP": "video", "XCLIPConfig": "video", "XCLIPObjective": "video_objective",
    "CharVocab": "textdecoder", "CharDecoder": "textdecoder", "DPTRObjective": "dptr",
    "orp_perturb": "dptr",
    "RegionEncoder": "region", "RegionTextObjective": "region", "sample_boxes": "region",
    "region_features": "region", "box_retrieval": "region_eval",
    "clip_loss": "losses", "siglip_loss": "losses", "multi_positive_loss": "losses",
    "multi_positive_targets": "losses",
    "ImageTextModel": "model", "ImageTextSpec": "model", "lock_groups": "model",
    "count_trainable": "model",
    "TextTower": "towers", "MiniLMTower": "towers", "OpenClipTower": "towers",
    "text_tower": "towers",
    "ContrastiveObjective": "objective",
    "ImageTextPairs": "data", "TemplateCaptions": "data",
    "zeroshot_metrics": "evaluate", "retrieval_metrics": "evaluate",
    "zeroshot_evaluate": "evaluate", "retrieval_evaluate": "evaluate",
    "load_image_text_model": "io", "save_image_text_model": "io",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
