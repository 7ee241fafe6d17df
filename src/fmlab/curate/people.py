"""PASS-style content categories: which captions, class names or classifier scores drop an image.

PASS (Asano et al., 2021) builds a self-supervised pre-training set without people: images whose
tags mention people are removed, then a person detector and manual review remove the rest. Here
a *category* (``people`` for now) is a keyword list and a class-name list; an image is dropped
when any of its captions matches a keyword, when its class is one of the category's classes (or
a class given on the command line), or when an optional person-classifier score reaches a
threshold. Every drop carries its reason(s), so a manifest can show why each image went.

Keyword matching is case-insensitive and word-bounded (``man`` matches "A man." and "man's" but
not "manual" or "woman"); each keyword also matches its regular plural (``+s``/``+es``), the
irregular plurals listed in :data:`IRREGULAR_PLURALS`, and the possessive ``'s``/``s'``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from fmlab.errors import ConfigError

# keywords of the "people" category (singular forms; plurals are added by word_forms)
PEOPLE_KEYWORDS: tuple[str, ...] = (
    "person", "man", "woman", "boy", "girl", "child", "kid", "baby", "toddler", "infant",
    "teen", "teenager", "gentleman", "lady", "guy", "dude", "human",
    "player", "skier", "snowboarder", "surfer", "skateboarder", "rider", "biker", "cyclist",
    "batter", "pitcher", "catcher", "umpire", "athlete", "crowd", "spectator", "tourist",
    "pedestrian", "driver", "worker", "chef", "officer", "policeman",
    "policewoman", "soldier", "student", "teacher", "family", "friend", "mother",
    "father", "mom", "dad", "son", "daughter", "brother", "sister", "wife", "husband",
    "bride", "groom", "someone", "somebody", "he", "she", "him", "her", "his", "hers",
    "team", "audience", "customer", "vendor", "farmer", "cowboy", "jockey", "fisherman",
)
# class names of labelled sources that are people (CIFAR-100's "people" superclass and more)
PEOPLE_CLASSES: tuple[str, ...] = ("person", "people", "man", "woman", "baby", "boy", "girl",
                                   "child", "human")
IRREGULAR_PLURALS: dict[str, str] = {
    "person": "people", "man": "men", "woman": "women", "child": "children",
    "gentleman": "gentlemen", "lady": "ladies", "policeman": "policemen",
    "policewoman": "policewomen", "fisherman": "fishermen", "family": "families",
}


@dataclass(frozen=True)
class Category:
    """What to drop: caption keywords and class names (matched case-insensitively)."""

    name: str
    keywords: tuple[str, ...]
    classes: tuple[str, ...]


CATEGORIES: dict[str, Category] = {
    "people": Category("people", PEOPLE_KEYWORDS, PEOPLE_CLASSES),
}


def get_category(name: str) -> Category:
    """The registered category ``name``.

    Args:
        name: a key of :data:`CATEGORIES`.

    Returns:
        The :class:`Category`.

    Raises:
        fmlab.errors.ConfigError: naming the unknown category and the known ones.

    Examples:
        >>> get_category("people").name
        'people'
    """
    if name not in CATEGORIES:
        raise ConfigError(f"--drop: unknown category {name!r}; known: {', '.join(sorted(CATEGORIES))}")
    return CATEGORIES[name]


def word_forms(word: str) -> list[str]:
    """The forms of ``word`` that match: itself, its plural(s), lower-cased.

    Args:
        word: a keyword (singular).

    Returns:
        The distinct forms, the word first.

    Examples:
        >>> word_forms("man"), word_forms("bus"), word_forms("child")
        (['man', 'men', 'mans'], ['bus', 'buses'], ['child', 'children', 'childs'])
    """
    w = word.strip().lower()
    forms = [w]
    if w in IRREGULAR_PLURALS:
        forms.append(IRREGULAR_PLURALS[w])
    forms.append(w + "es" if w.endswith(("s", "x", "z", "ch", "sh")) else w + "s")
    return list(dict.fromkeys(forms))


class KeywordMatcher:
    """Case-insensitive, word-bounded keyword search; reports the keyword (singular) matched."""

    def __init__(self, keywords: tuple[str, ...] | list[str]) -> None:
        self._base: dict[str, str] = {}
        for k in keywords:
            for form in word_forms(k):
                self._base.setdefault(form, k.strip().lower())
        alternatives = "|".join(re.escape(f) for f in sorted(self._base, key=len, reverse=True))
        # letters/digits/underscore on either side break the match; "'s" / "'" may follow
        self._re = re.compile(rf"(?<![\w])({alternatives})(?:'s|')?(?![\w])", re.IGNORECASE)

    def find(self, text: str) -> list[str]:
        """The distinct keywords found in ``text`` (singular form), in order of appearance.

        Examples:
            >>> m = KeywordMatcher(["man", "person"])
            >>> m.find("Two MEN and a man's hat; people."), m.find("a manual for a woman")
            (['man', 'person'], [])
        """
        return list(dict.fromkeys(self._base[f.lower()] for f in self._re.findall(text)))


def caption_reasons(captions: list[str], caption_image_index: np.ndarray, n_images: int,
                    matcher: KeywordMatcher) -> list[list[str]]:
    """Per image, one reason per matching caption: ``"caption 3 matches 'woman'"``.

    Args:
        captions: all captions of the split.
        caption_image_index: image row of each caption.
        n_images: number of images of the split.
        matcher: the category's keyword matcher.

    Returns:
        ``n_images`` lists of reasons (empty: no caption matched). The caption number is the
        caption's rank among its image's captions (0-based).

    Examples:
        >>> caption_reasons(["a dog", "a man", "two women"], np.array([0, 1, 1]), 2,
        ...                 KeywordMatcher(["man", "woman"]))
        [[], ["caption 0 matches 'man'", "caption 1 matches 'woman'"]]
    """
    reasons: list[list[str]] = [[] for _ in range(n_images)]
    rank = np.zeros(n_images, dtype=np.int64)
    for text, img in zip(captions, np.asarray(caption_image_index, dtype=np.int64)):
        found = matcher.find(text)
        if found:
            reasons[img].append(f"caption {rank[img]} matches {', '.join(repr(f) for f in found)}")
        rank[img] += 1
    return reasons


def classes_to_drop(class_names: list[str], category: Category | None,
                    extra: list[str]) -> dict[int, str]:
    """Class ids whose name is a category class, matches a category keyword, or is in ``extra``.

    Args:
        class_names: the source's class names.
        category: the category (None: only ``extra``).
        extra: class names given by the user (``--drop-classes``); each must exist.

    Returns:
        class id -> why (``"class 'person'"`` or ``"class 'cat' (--drop-classes)"``).

    Raises:
        fmlab.errors.ConfigError: an ``extra`` name is not a class of the source.

    Examples:
        >>> classes_to_drop(["cat", "man", "women's shoe", "dog"], get_category("people"), ["dog"])
        {1: "class 'man'", 2: "class 'women's shoe'", 3: "class 'dog' (--drop-classes)"}
    """
    lower = [c.lower() for c in class_names]
    unknown = [e for e in extra if e.lower() not in lower]
    if unknown:
        raise ConfigError(f"--drop-classes: {', '.join(map(repr, unknown))} not a class of the "
                          f"source; classes: {', '.join(class_names)}")
    out: dict[int, str] = {}
    if category is not None:
        matcher = KeywordMatcher(category.keywords + category.classes)
        cls = {c.lower() for c in category.classes}
        for i, name in enumerate(class_names):
            if name.lower() in cls or matcher.find(name.replace("_", " ")):
                out[i] = f"class '{name}'"
    wanted = {e.lower() for e in extra}
    for i, name in enumerate(class_names):
        if i not in out and name.lower() in wanted:
            out[i] = f"class '{name}' (--drop-classes)"
    return out


def score_reasons(scores: np.ndarray, threshold: float) -> list[list[str]]:
    """The classifier hook: ``"classifier score 0.93 >= 0.5"`` for each score at/over threshold.

    Examples:
        >>> score_reasons(np.array([0.2, 0.93]), 0.5)
        [[], ['classifier score 0.930 >= 0.5']]
    """
    return [[f"classifier score {s:.3f} >= {threshold:g}"] if s >= threshold else []
            for s in np.asarray(scores, dtype=np.float64)]
