"""The protocol of a result: what a number was measured on, built in one place.

Six workflows used to write results-store rows by hand, and they disagreed (``fmlab adapt``
stored the resolved backbone name, ``fmlab finetune`` the string the user typed). A
:class:`Protocol` is built from the objects themselves (the backbone, the splits), so one network
is always stored under one key: ``backbone.name``, the registry's resolved name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Protocol:
    """Where a result comes from: evaluated source and split, backbone and weights, hashes.

    Attributes:
        source: ``"<source spec>:<split>"`` of the evaluated data.
        split_hash: content hash of the evaluated split (a row's own ``split_sha256`` wins).
        backbone: the backbone's resolved registry name (``create_backbone(...).name``).
        weights_hash: sha256 of the backbone's weights (None: not known).
        fields: everything else that defines the protocol (preprocessing, train/test content
            hashes, views, the init seed of a random-init backbone, ...); stored in ``extra``.

    Examples:
        >>> p = Protocol.of("npz:x.npz", "test", split_hash="ab12", views=2)
        >>> p.source, p.fields
        ('npz:x.npz:test', {'views': 2})
    """

    source: str
    split_hash: str | None = None
    backbone: str | None = None
    weights_hash: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, source: str, split: str | None = None, *, backbone: Any = None, train: Any = None,
           test: Any = None, split_hash: str | None = None, **fields: Any) -> Protocol:
        """Build the protocol from the objects a workflow holds.

        Args:
            source: the source spec as the user gave it (``"cifar10"``, ``"npz:PATH"``).
            split: the evaluated split's name; appended to ``source`` as ``source:split``.
            backbone: a :class:`~fmlab.models.Backbone` (or anything with ``name``,
                ``weights_sha256``, optionally ``preprocess`` and ``init_seed``).
            train, test: image splits whose ``content_hash`` is recorded; ``test`` also gives
                the default ``split_hash``.
            split_hash: the evaluated split's hash when no ``test`` split object is at hand.
            **fields: further protocol facts; ``None`` values are dropped.

        Returns:
            The protocol.
        """
        facts: dict[str, Any] = {}
        name = weights = None
        if backbone is not None:
            name, weights = backbone.name, getattr(backbone, "weights_sha256", None)
            pre = getattr(backbone, "preprocess", None)
            if pre is not None and hasattr(pre, "to_dict"):
                facts["preprocess"] = pre.to_dict()
            if weights is None and getattr(backbone, "init_seed", None) is not None:
                facts["init_seed"] = backbone.init_seed
        if train is not None:
            facts["train_content_hash"] = train.content_hash
        if test is not None:
            facts["test_content_hash"] = test.content_hash
            split_hash = split_hash or test.content_hash
        facts.update({k: v for k, v in fields.items() if v is not None})
        full = f"{source}:{split}" if split else source
        return cls(full, split_hash, name, weights, facts)

    def to_dict(self) -> dict[str, Any]:
        """The protocol as a JSON-able dict (``results.json``, ``run.json``)."""
        return {"source": self.source, "split_hash": self.split_hash, "backbone": self.backbone,
                "weights_sha256": self.weights_hash, **self.fields}

    def rows(self, task: str, run_id: str, records: list[Mapping[str, Any]],
             metrics: tuple[str, ...] | list[str] | None = None, *, extra_keys: tuple[str, ...] = (),
             seconds_key: str = "seconds") -> list[dict[str, Any]]:
        """Results-store rows for ``records`` under this protocol.

        Args:
            task: the task column (``"adapt"``, ``"finetune"``, ``"gan"``, ...).
            run_id: one id shared by the rows of this call.
            records: wide records (one per method/seed, with a key per metric) when
                ``metrics`` is given, else long records with ``metric`` and ``value`` keys.
                Each may carry ``method``, ``seed``, ``hyperparameters``, ``split_sha256``
                (overrides the protocol's split hash), ``extra`` (a dict) and a seconds value.
            metrics: the metric keys of wide records; records lacking one (or holding None)
                give no row for it.
            extra_keys: record keys copied into each row's ``extra``.
            seconds_key: the record key holding the run time.

        Returns:
            One row per (record, metric), with the columns of :data:`~fmlab.results.COLUMNS`.
        """
        out = []
        for r in records:
            pairs = ([(m, r.get(m)) for m in metrics] if metrics is not None
                     else [(r["metric"], r["value"])])
            extra = {**self.fields, **{k: r[k] for k in extra_keys if k in r}, **(r.get("extra") or {})}
            for metric, value in pairs:
                if value is None:
                    continue
                out.append({"run_id": run_id, "task": task, "source": self.source,
                            "split_hash": r.get("split_sha256") or self.split_hash,
                            "backbone": self.backbone, "weights_hash": self.weights_hash,
                            "method": r.get("method"), "hyperparameters": r.get("hyperparameters"),
                            "seed": r.get("seed"), "metric": metric, "value": float(value),
                            "seconds": r.get(seconds_key), "extra": extra})
        return out
