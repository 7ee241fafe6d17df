"""The TU reader: ids validated (errors name the file and the line), labels remapped, split, batches."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.cli.main import main
from fmlab.data.graphs import GraphSource, graph_split, read_tu, resolve_graph_dataset
from fmlab.errors import DataError
from tests.graphs._tu import random_graphs, write_tu


@pytest.fixture
def toy(tmp_path):
    return write_tu(tmp_path / "TOY", [(3, [(0, 1), (1, 2)]), (2, [(0, 1)]), (4, [(0, 1), (2, 3)])], [-1, 1, 1])


def test_reads_graphs_with_local_ids_and_remapped_labels(toy):
    ds = read_tu(toy)
    assert len(ds) == 3 and ds.labels.tolist() == [0, 1, 1] and ds.num_classes == 2
    n, e = ds.graph(2)
    assert n == 4 and sorted(map(tuple, e.T.tolist())) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert ds.node_labels.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 0]
    assert len(ds.digest) == 64


@pytest.mark.parametrize("missing", ["A", "graph_indicator", "graph_labels"])
def test_missing_file_is_named(toy, missing):
    (toy / f"TOY_{missing}.txt").unlink()
    with pytest.raises(DataError, match=f"TOY_{missing}.txt: missing"):
        read_tu(toy)


def test_node_id_out_of_range_names_file_and_line(toy):
    lines = (toy / "TOY_A.txt").read_text().splitlines()
    lines[4] = "5, 99"
    (toy / "TOY_A.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"TOY_A.txt: line 5: node id 99 out of range 1..9"):
        read_tu(toy)


def test_malformed_lines_and_cross_graph_edges_are_named(toy):
    (toy / "TOY_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n3\n3\n3\nx\n")
    with pytest.raises(DataError, match=r"TOY_graph_indicator.txt: line 9: not an integer"):
        read_tu(toy)
    (toy / "TOY_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n3\n3\n3\n3\n")
    (toy / "TOY_A.txt").write_text("1, 4\n4, 1\n")
    with pytest.raises(DataError, match=r"TOY_A.txt: line 1: edge joins two graphs"):
        read_tu(toy)


@pytest.mark.parametrize("breakage, words", [("missing", "TOY_graph_labels.txt: missing"),
                                             ("range", "TOY_A.txt: line 1: node id 42")])
def test_cli_exits_2_with_one_line(toy, tmp_path, capsys, breakage, words):
    if breakage == "missing":
        (toy / "TOY_graph_labels.txt").unlink()
    else:
        (toy / "TOY_A.txt").write_text("42, 1\n")
    other = write_tu(tmp_path / "OTHER", *random_graphs(6))
    rc = main(["graph", "feasibility", "--pretrain", f"tu:{other}", "--downstream", f"tu:{toy}"])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_named_dataset_resolves_under_the_data_root(tmp_path):
    (tmp_path / "tu_graphs" / "MUTAG").mkdir(parents=True)
    assert resolve_graph_dataset("MUTAG", tmp_path) == tmp_path / "tu_graphs" / "MUTAG"
    with pytest.raises(DataError, match="staged: MUTAG"):
        resolve_graph_dataset("NOPE", tmp_path)


def test_split_is_seeded_stratified_disjoint_and_hashed():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    a, b, c = graph_split(labels, 0), graph_split(labels, 0), graph_split(labels, 1)
    assert a["hash"] == b["hash"] != c["hash"]
    parts = [set(a[k].tolist()) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set().union(*parts) == set(range(100))
    assert np.bincount(labels[a["test"]]).tolist() == [10, 6, 4]  # 20 % of each class


def test_batch_is_a_disjoint_union(toy):
    src = GraphSource([read_tu(toy)])
    b = src.get_batch(np.array([2, 0]))
    assert b["x"].shape == (7, 11) and b["batch"].tolist() == [0] * 4 + [1] * 3
    assert b["edge_index"].max() == 6 and b["labels"].tolist() == [1, 0] and int(b["num_graphs"]) == 2
    assert b["x"].sum(1).tolist() == [1.0] * 7  # one-hot degree


def test_feasibility_cli_prints_the_score_last(tmp_path, capsys):
    a = write_tu(tmp_path / "A", *random_graphs(30, seed=1))
    assert main(["graph", "feasibility", "--pretrain", f"tu:{a}", "--downstream", f"tu:{a}", "--json",
                 str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out.split()
    assert out[-2] == "feasibility" and float(out[-1]) == pytest.approx(1.0)  # a set against itself
    assert (tmp_path / "f.json").is_file()


def test_staged_datasets_score_in_unit_interval(data_root):
    from fmlab.experiments.graph import run_feasibility

    if not (data_root / "tu_graphs" / "MUTAG").is_dir():
        pytest.skip("the staged TU datasets are not under FMLAB_DATA")
    res = run_feasibility("MUTAG", "ENZYMES", data_root=str(data_root))
    assert 0.0 < res["score"] < 1.0 and res["warning"] is None
    assert abs(sum(res["alpha"]) - 1) < 1e-3 and [r["graphs"] for r in res["datasets"]] == [188, 600]
