"""Graph-classification data in the TU Dortmund text format, a seeded split and an engine source.

Why our own reader rather than PyTorch Geometric's ``TUDataset``: the project needs one error per
malformed file that names the file and the line (a node id out of range in ``DS_A.txt``, a
missing ``DS_graph_indicator.txt``), it must read the staged copies in place (read-only, no
``processed/`` folder written beside them), and the graphon code needs plain numpy edge lists.

Layout (per dataset ``DS``; ids are 1-based, one value or a comma-separated row per line):
``DS_A.txt`` (directed edges ``row, col``), ``DS_graph_indicator.txt`` (graph id of each node),
``DS_graph_labels.txt`` (class of each graph), optional ``DS_node_labels.txt`` and
``DS_node_attributes.txt``. Graph labels are remapped to ``0..C-1`` (MUTAG's -1/1 too).

A dataset spec is ``tu:PATH`` (a folder) or a name resolved as ``$FMLAB_DATA/tu_graphs/<NAME>``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.data.named import data_root as resolve_root
from fmlab.errors import DataError

__all__ = ["GraphDataset", "GraphSource", "degree_features", "graph_split", "load_graph_datasets",
           "parse_specs", "read_tu", "resolve_graph_dataset"]

MAX_DEGREE = 10  # degree one-hot width - 1: degrees above it share the last slot


@dataclass
class GraphDataset:
    """Graphs of one TU dataset, stored as one big node-indexed edge list.

    Attributes:
        name: the dataset's name (folder name).
        edge_index: (2, E) int64 0-based global node ids, every undirected edge both ways.
        graph_of_node: (N,) int64 graph index 0..G-1 of each node.
        node_ptr: (G+1,) int64 — nodes of graph g are ``node_order[node_ptr[g]:node_ptr[g+1]]``.
        node_order: (N,) int64 node ids grouped by graph.
        labels: (G,) int64 graph classes 0..C-1.
        node_labels: (N,) int64 or None.
        digest: sha256 of the files read (recorded with every result).
    """

    name: str
    edge_index: np.ndarray
    graph_of_node: np.ndarray
    node_ptr: np.ndarray
    node_order: np.ndarray
    labels: np.ndarray
    node_labels: np.ndarray | None
    digest: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def graph(self, g: int) -> tuple[int, np.ndarray]:
        """``(n, edges)``: the node count of graph ``g`` and its (2, E_g) local 0-based edges."""
        edges = self._edges_of(g)
        return int(self.node_ptr[g + 1] - self.node_ptr[g]), self._local[edges]

    def _edges_of(self, g: int) -> np.ndarray:
        if not hasattr(self, "_edge_ptr"):
            # local id of a node = its position within its graph's block of node_order
            pos = np.arange(len(self.node_order)) - self.node_ptr[self.graph_of_node[self.node_order]]
            self._local = np.empty(len(self.node_order), dtype=np.int64)
            self._local[self.node_order] = pos
            order = np.argsort(self.graph_of_node[self.edge_index[0]], kind="stable")
            self._sorted_edges = self.edge_index[:, order]
            counts = np.bincount(self.graph_of_node[self._sorted_edges[0]], minlength=len(self))
            self._edge_ptr = np.concatenate([[0], np.cumsum(counts)])
        return self._sorted_edges[:, self._edge_ptr[g]:self._edge_ptr[g + 1]]


def _read_int_table(path: Path, cols: int) -> np.ndarray:
    """Integer rows of a TU file; a bad line raises a DataError naming the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    out = np.empty((len(lines), cols), dtype=np.int64)
    for i, line in enumerate(lines):
        parts = line.split(",")
        if len(parts) != cols:
            raise DataError(f"{path}: line {i + 1}: expected {cols} comma-separated integer(s), "
                            f"got {line.strip()!r}")
        try:
            out[i] = [int(p) for p in parts]
        except ValueError:
            raise DataError(f"{path}: line {i + 1}: not an integer: {line.strip()!r}") from None
    return out


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 1


def read_tu(folder: str | os.PathLike, name: str | None = None) -> GraphDataset:
    """Read one TU dataset folder, validating every id.

    Args:
        folder: the folder holding ``NAME_A.txt`` etc.
        name: the file prefix (default: the folder's name).

    Returns:
        The :class:`GraphDataset`.

    Raises:
        DataError: a missing required file, a malformed line, a node id out of range, an edge
            joining two graphs, a graph with no node — each naming the file and the line.

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()) / "TOY"; d.mkdir()
        >>> _ = (d / "TOY_A.txt").write_text("1, 2\\n2, 1\\n3, 4\\n4, 3\\n")
        >>> _ = (d / "TOY_graph_indicator.txt").write_text("1\\n1\\n2\\n2\\n")
        >>> _ = (d / "TOY_graph_labels.txt").write_text("-1\\n1\\n")
        >>> ds = read_tu(d)
        >>> len(ds), ds.labels.tolist(), ds.graph(1)[0], ds.graph(1)[1].tolist()
        (2, [0, 1], 2, [[0, 1], [1, 0]])
    """
    folder = Path(folder)
    name = name or folder.name
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of TU files (expected {name}_A.txt etc.)")
    files = {k: folder / f"{name}_{k}.txt" for k in ("A", "graph_indicator", "graph_labels")}
    for f in files.values():
        if not f.is_file():
            raise DataError(f"{f}: missing (a TU dataset needs {name}_A.txt, "
                            f"{name}_graph_indicator.txt and {name}_graph_labels.txt)")
    indicator = _read_int_table(files["graph_indicator"], 1)[:, 0]
    raw_labels = _read_int_table(files["graph_labels"], 1)[:, 0]
    edges = _read_int_table(files["A"], 2)
    n_nodes, n_graphs = len(indicator), len(raw_labels)
    bad = (indicator < 1) | (indicator > n_graphs)
    if bad.any():
        raise DataError(f"{files['graph_indicator']}: line {_first_bad(bad)}: graph id "
                        f"{indicator[bad][0]} out of range 1..{n_graphs} (the number of lines of "
                        f"{files['graph_labels'].name})")
    counts = np.bincount(indicator - 1, minlength=n_graphs)
    if (counts == 0).any():
        raise DataError(f"{files['graph_indicator']}: graph {int(np.argmin(counts)) + 1} has no node")
    edges = _checked_edges(files, edges, indicator - 1)
    graph_of_node = indicator - 1
    node_labels = _optional_node_labels(folder / f"{name}_node_labels.txt", n_nodes)
    digest = hashlib.sha256()
    for f in sorted(folder.glob(f"{name}_*.txt")):
        digest.update(f.name.encode() + f.read_bytes())
    _, labels = np.unique(raw_labels, return_inverse=True)
    order = np.argsort(graph_of_node, kind="stable")
    return GraphDataset(name=name, edge_index=edges.astype(np.int64), graph_of_node=graph_of_node,
                        node_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                        node_order=order.astype(np.int64), labels=labels.astype(np.int64),
                        node_labels=node_labels, digest=digest.hexdigest())


def _checked_edges(files: dict[str, Path], edges: np.ndarray, graph_of_node: np.ndarray) -> np.ndarray:
    """(2, E) 0-based edges; an id out of range or an edge across graphs names its line of DS_A.txt."""
    n_nodes = len(graph_of_node)
    bad = (edges < 1) | (edges > n_nodes)
    if bad.any():
        row = _first_bad(bad.any(axis=1))
        raise DataError(f"{files['A']}: line {row}: node id {edges[row - 1][bad[row - 1]][0]} out of "
                        f"range 1..{n_nodes} (the number of lines of {files['graph_indicator'].name})")
    edges = edges.T - 1
    cross = graph_of_node[edges[0]] != graph_of_node[edges[1]]
    if cross.any():
        raise DataError(f"{files['A']}: line {_first_bad(cross)}: edge joins two graphs")
    return edges


def _optional_node_labels(path: Path, n_nodes: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    lab = _read_int_table(path, 1)[:, 0]
    if len(lab) != n_nodes:
        raise DataError(f"{path}: {len(lab)} lines, but the graph indicator lists {n_nodes} nodes")
    return lab


def resolve_graph_dataset(spec: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder of a dataset spec: ``tu:PATH``, or a name under ``<root>/tu_graphs/``.

    Examples:
        >>> resolve_graph_dataset("tu:/data/MUTAG").as_posix()
        '/data/MUTAG'
        >>> resolve_graph_dataset("MUTAG", "/srv").as_posix()
        '/srv/tu_graphs/MUTAG'
    """
    spec = spec.strip()
    if not spec:
        raise DataError("empty graph dataset name")
    if spec.startswith("tu:"):
        return Path(spec[3:]).expanduser()
    root = resolve_root(data_root) / "tu_graphs"
    folder = root / spec
    if not folder.is_dir() and root.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DataError(f"graph dataset {spec!r}: no folder {folder} (staged: {', '.join(known)}; "
                        "or give tu:PATH)")
    return folder


def parse_specs(text: str) -> list[str]:
    """Comma-separated dataset specs (``"MUTAG,tu:/x/PROTEINS"``), refusing empty items.

    Examples:
        >>> parse_specs("MUTAG, ENZYMES")
        ['MUTAG', 'ENZYMES']
    """
    items = [s.strip() for s in text.split(",")]
    if not items or any(not s for s in items):
        raise DataError(f"dataset list {text!r}: empty item (give comma-separated names or tu:PATH)")
    return items


_CACHE: dict[tuple[str, str], GraphDataset] = {}


def load_graph_datasets(specs: list[str], data_root: str | os.PathLike | None = None) -> list[GraphDataset]:
    """Read each spec (memoised per process: the study reads the same folders many times)."""
    out = []
    for spec in specs:
        folder = resolve_graph_dataset(spec, data_root)
        key = (str(folder.resolve()), spec)
        if key not in _CACHE:
            _CACHE[key] = read_tu(folder)
        out.append(_CACHE[key])
    return out


def graph_split(labels: np.ndarray, seed: int, test_fraction: float = 0.2,
                val_fraction: float = 0.1) -> dict[str, Any]:
    """A seeded stratified train / val / test split of graph indices, with its hash.

    Validation is carved from the training part only; the test part is never seen in training.

    Examples:
        >>> s = graph_split(np.array([0, 1] * 10), seed=0)
        >>> len(s["train"]) + len(s["val"]) + len(s["test"]), len(s["test"]), len(s["hash"])
        (20, 4, 64)
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(idx)))
        n_val = int(round(val_fraction * (len(idx) - n_test)))
        parts["test"] += idx[:n_test].tolist()
        parts["val"] += idx[n_test:n_test + n_val].tolist()
        parts["train"] += idx[n_test + n_val:].tolist()
    out: dict[str, Any] = {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in parts.items()}
    h = hashlib.sha256()
    for k in ("train", "val", "test"):
        h.update(k.encode() + out[k].tobytes())
    out["hash"] = h.hexdigest()
    return out


def degree_features(edge_index: np.ndarray, n: int, max_degree: int = MAX_DEGREE) -> np.ndarray:
    """One-hot node degree capped at ``max_degree``: the dataset-agnostic input of the GIN.

    Why degree only: node labels mean different things in each TU set (atoms in MUTAG, secondary
    structure in PROTEINS), so padding them to a common width would pretend a shared vocabulary.

    Examples:
        >>> degree_features(np.array([[0, 1], [1, 0]]), 3, max_degree=2).tolist()
        [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    deg = np.minimum(np.bincount(edge_index[0], minlength=n), max_degree)
    x = np.zeros((n, max_degree + 1), dtype=np.float32)
    x[np.arange(n), deg] = 1.0
    return x


class GraphSource:
    """An engine training source over a set of graphs (``len`` + ``get_batch``).

    ``get_batch(indices)`` returns a disjoint union of the chosen graphs: ``x`` (N, F) degree
    one-hot, ``edge_index`` (2, E) into the batch's nodes, ``batch`` (N,) graph slot of each node,
    ``labels`` (B,) and ``num_graphs`` (a 0-d tensor).

    Args:
        datasets: the datasets whose graphs are pooled.
        indices: per dataset, the graph indices used (None: all).
    """

    def __init__(self, datasets: list[GraphDataset], indices: list[np.ndarray] | None = None) -> None:
        self.items: list[tuple[np.ndarray, np.ndarray, int]] = []
        for k, ds in enumerate(datasets):
            chosen = range(len(ds)) if indices is None else indices[k]
            for g in chosen:
                n, e = ds.graph(int(g))
                self.items.append((degree_features(e, n), e, int(ds.labels[g])))
        self.labels = np.array([it[2] for it in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        xs, es, bs = [], [], []
        offset = 0
        for slot, i in enumerate(np.asarray(indices).tolist()):
            x, e, _ = self.items[i]
            xs.append(x)
            es.append(e + offset)
            bs.append(np.full(len(x), slot, dtype=np.int64))
            offset += len(x)
        return {"x": np.concatenate(xs), "edge_index": np.concatenate(es, axis=1),
                "batch": np.concatenate(bs), "labels": self.labels[np.asarray(indices)],
                "num_graphs": np.asarray(len(indices), dtype=np.int64)}
