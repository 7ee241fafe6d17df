"""Text-recognition metrics: pure functions of predicted and true transcriptions.

``sequence_accuracy`` is the share of strings read exactly. ``character_accuracy`` is the standard
scene-text-recognition "1 - N.E.D." (ICDAR 2019 ReCTS; the ``norm_edit_dis`` of OpenOCR, which DPTR
reports): one minus the mean over strings of the Levenshtein distance divided by the longer of the two
lengths. It is preferred over per-position accuracy because one dropped or inserted character shifts
every later position, so per-position accuracy would call "1234" read as "234" 0% right while the
edit distance says three of four characters are there.
"""

from __future__ import annotations

from collections.abc import Sequence

from fmlab.utils.validation import check

__all__ = ["character_accuracy", "edit_distance", "sequence_accuracy"]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: fewest insertions, deletions and substitutions turning ``a`` into ``b``.

    Args:
        a: one string.
        b: the other string.

    Returns:
        The distance, an ``int`` in ``[|len(a) - len(b)|, max(len(a), len(b))]``.

    Examples:
        >>> edit_distance("kitten", "sitting")
        3
        >>> edit_distance("", "abc"), edit_distance("abc", "abc")
        (3, 0)
    """
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _check_pairs(pred_texts: Sequence[str], true_texts: Sequence[str]) -> tuple[list[str], list[str]]:
    pred, true = list(pred_texts), list(true_texts)
    check(len(pred) == len(true), "pred_texts", len(pred), f"strings given for {len(true)} true_texts")
    check(len(true) > 0, "true_texts", true, "must hold at least one string")
    bad = [t for t in pred + true if not isinstance(t, str)]
    check(not bad, "pred_texts/true_texts", bad[:1], "must be strings")
    return pred, true


def sequence_accuracy(pred_texts: Sequence[str], true_texts: Sequence[str]) -> float:
    """Share of strings whose prediction equals the transcription exactly (word accuracy).

    Args:
        pred_texts: predicted transcriptions.
        true_texts: true transcriptions, as many as ``pred_texts``.

    Returns:
        A float in ``[0, 1]``.

    Examples:
        >>> sequence_accuracy(["123", "45", "6"], ["123", "46", "6"])
        0.6666666666666666
    """
    pred, true = _check_pairs(pred_texts, true_texts)
    return sum(p == t for p, t in zip(pred, true)) / len(true)


def character_accuracy(pred_texts: Sequence[str], true_texts: Sequence[str]) -> float:
    """``1 - mean(edit_distance(p, t) / max(len(p), len(t)))`` over strings ("1 - N.E.D.").

    A pair of empty strings counts as read correctly (distance 0).

    Args:
        pred_texts: predicted transcriptions.
        true_texts: true transcriptions, as many as ``pred_texts``.

    Returns:
        A float in ``[0, 1]``; 1 exactly when every string is read exactly.

    Examples:
        >>> character_accuracy(["234", "56"], ["1234", "56"])  # 1 - (1/4 + 0) / 2
        0.875
    """
    pred, true = _check_pairs(pred_texts, true_texts)
    ned = [edit_distance(p, t) / max(len(p), len(t), 1) for p, t in zip(pred, true)]
    return 1.0 - sum(ned) / len(ned)
