"""Write tiny TU-format datasets into a tmp folder (the reader's and the CLI's test inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tu(folder: Path, graphs: list[tuple[int, list[tuple[int, int]]]], labels: list[int],
             node_labels: bool = True) -> Path:
    """``graphs``: (n, undirected edges with 0-based local ids) per graph; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    a, ind, nl = [], [], []
    offset = 0
    for g, (n, edges) in enumerate(graphs):
        for u, v in edges:
            a += [f"{u + offset + 1}, {v + offset + 1}", f"{v + offset + 1}, {u + offset + 1}"]
        ind += [str(g + 1)] * n
        nl += [str(i % 3) for i in range(n)]
        offset += n
    (folder / f"{name}_A.txt").write_text("\n".join(a) + "\n")
    (folder / f"{name}_graph_indicator.txt").write_text("\n".join(ind) + "\n")
    (folder / f"{name}_graph_labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    if node_labels:
        (folder / f"{name}_node_labels.txt").write_text("\n".join(nl) + "\n")
    return folder


def random_graphs(count: int, seed: int = 0) -> tuple[list, list[int]]:
    """Class 0: rings of 6-10 nodes; class 1: denser random graphs (so a GIN can tell them apart)."""
    rng = np.random.default_rng(seed)
    graphs, labels = [], []
    for i in range(count):
        n = int(rng.integers(6, 11))
        if i % 2 == 0:
            edges = [(j, (j + 1) % n) for j in range(n)]
        else:
            edges = [(u, v) for u in range(n) for v in range(u + 1, n) if rng.random() < 0.5]
            edges += [(j, j + 1) for j in range(n - 1)]
            edges = sorted(set(edges))
        graphs.append((n, edges))
        labels.append(i % 2)
    return graphs, labels
