"""``fmlab curate`` end to end: outputs, formats, reproducibility, statistics and user errors."""

import csv
import json

import numpy as np
import pytest

from fmlab.cli.main import main
from fmlab.curate import CurateConfig, curate

ENTRY_COUNTS = {"alpha": 900, "bravo": 400, "charlie": 150, "delta": 60, "echo": 20}
FILLER = ["the", "a", "photo", "of", "alphabet", "bravos", "nice"]  # look-alikes must not match


def write_pool(tmp_path, n_unmatched=50, seed=100):
    """JSONL pool: each matched caption names exactly one entry; c_e known by construction."""
    rng = np.random.default_rng(seed)
    recs = []
    for e, c in ENTRY_COUNTS.items():
        for _ in range(c):
            words = list(rng.choice(FILLER, size=4)) + [e + str(rng.choice(["", ".", ","]))]
            rng.shuffle(words)
            recs.append({"caption": " ".join(words), "url": f"http://x/{len(recs)}.jpg"})
    for _ in range(n_unmatched):
        recs.append({"caption": " ".join(rng.choice(FILLER, size=5)), "url": "u"})
    order = rng.permutation(len(recs))
    recs = [recs[i] for i in order]
    cap = tmp_path / "pool.jsonl"
    # unusual but valid spacing must survive byte for byte
    cap.write_text("".join(json.dumps(r, separators=(", ", ":")) + "\n" for r in recs))
    ent = tmp_path / "entries.txt"
    ent.write_text("\n".join(ENTRY_COUNTS) + "\nzulu\n")
    return cap, ent, recs


def run_cli(cap, ent, out, t=100, seed=0, *extra):
    return main(
        [
            "curate",
            "--captions",
            str(cap),
            "--entries",
            str(ent),
            "--threshold",
            str(t),
            "--seed",
            str(seed),
            "--out",
            str(out),
            *extra,
        ]
    )


def test_end_to_end_outputs(tmp_path, capsys):
    cap, ent, recs = write_pool(tmp_path)
    out = tmp_path / "o"
    assert run_cli(cap, ent, out, t=100) == 0
    assert "kept" in capsys.readouterr().out
    lines = (out / "curated.jsonl").read_bytes().splitlines(keepends=True)
    src = set(cap.read_bytes().splitlines(keepends=True))
    assert lines and all(line in src for line in lines)  # records unchanged
    # kept records keep their input order
    order = {line: i for i, line in enumerate(cap.read_bytes().splitlines(keepends=True))}
    assert [order[x] for x in lines] == sorted(order[x] for x in lines)
    stats = json.loads((out / "stats.json").read_text())
    kept = [json.loads(x)["caption"] for x in lines]
    per_entry = {
        e: sum(f" {e} " in " " + k.replace(".", " ").replace(",", " ") + " " for k in kept)
        for e in ENTRY_COUNTS
    }
    assert stats["pairs_total"] == len(recs) and stats["pairs_kept"] == len(lines)
    assert stats["pairs_matched"] == sum(ENTRY_COUNTS.values())
    assert stats["entries"] == 6 and stats["unmatched_entries"] == 1
    assert stats["head_entries"] == 3 and stats["tail_entries"] == 2  # c >= t vs 0 < c < t
    assert stats["matches_after"] == len(lines)
    top = {d["entry"]: d for d in stats["top_entries"]}
    for e, c in ENTRY_COUNTS.items():
        assert top[e]["before"] == c and top[e]["after"] == per_entry[e]
        p = min(1.0, 100 / c)
        assert abs(per_entry[e] - min(c, 100)) <= 4 * np.sqrt(c * p * (1 - p)) + 1e-9
    rows = list(csv.DictReader((out / "entry_counts.csv").open()))
    assert [r["entry"] for r in rows] == [*ENTRY_COUNTS, "zulu"]
    assert [int(r["count_before"]) for r in rows] == [*ENTRY_COUNTS.values(), 0]
    png = (out / "entry_counts.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_same_seed_same_output(tmp_path):
    cap, ent, _ = write_pool(tmp_path)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run_cli(cap, ent, tmp_path / name, t=100, seed=seed) == 0
    a, b, c = ((tmp_path / n / "curated.jsonl").read_bytes() for n in "abc")
    assert a == b and a != c


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_give_the_jsonl_selection(tmp_path, fmt):
    cap, ent, recs = write_pool(tmp_path)
    if fmt == "csv":
        path = tmp_path / "pool.csv"
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["url", "caption"])
            w.writeheader()
            w.writerows(recs)
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        path = tmp_path / "pool.parquet"
        pq.write_table(pa.Table.from_pylist(recs), path, row_group_size=97)
    ref = curate(CurateConfig(captions=cap, entries=ent, threshold=50, seed=1, out=tmp_path / "j"))
    got = curate(
        CurateConfig(
            captions=path, entries=ent, threshold=50, seed=1, out=tmp_path / "x", batch_size=64
        )
    )
    assert got["captions_format"] == fmt and got["pairs_kept"] == ref["pairs_kept"]
    want = [json.loads(x) for x in (tmp_path / "j" / "curated.jsonl").read_text().splitlines()]
    have = [json.loads(x) for x in (tmp_path / "x" / "curated.jsonl").read_text().splitlines()]
    assert have == want


def test_batching_does_not_change_the_result(tmp_path):
    cap, ent, _ = write_pool(tmp_path)
    for name, bs in (("a", 65536), ("b", 7)):
        curate(
            CurateConfig(
                captions=cap, entries=ent, threshold=80, seed=2, out=tmp_path / name, batch_size=bs
            )
        )
    assert (tmp_path / "a" / "curated.jsonl").read_bytes() == (
        tmp_path / "b" / "curated.jsonl"
    ).read_bytes()


def _errors(tmp_path):
    cap, ent, _ = write_pool(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text('{"caption": "alpha"}\n{"text": "bravo"}\n')
    badjson = tmp_path / "bad.jsonl"
    badjson.write_text('{"caption": "alpha"}\n{oops\n')
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("url,text\nx,alpha\n")
    weird = tmp_path / "pool.txt"
    weird.write_text("alpha\n")
    numcap = tmp_path / "num.jsonl"
    numcap.write_text('{"caption": 5}\n')
    return [
        ((tmp_path / "missing.jsonl", ent, 10), "captions file not found"),
        ((cap, tmp_path / "missing.txt", 10), "entries file not found"),
        ((cap, empty, 10), "no entries"),
        ((cap, ent, 0), "threshold"),
        ((cap, ent, -5), "threshold"),
        ((nofield, ent, 10), "nofield.jsonl:2: record has no field 'caption'"),
        ((badjson, ent, 10), "bad.jsonl:2: not valid JSON"),
        ((nocol, ent, 10), "no column 'caption'"),
        ((weird, ent, 10), "--format"),
        ((numcap, ent, 10), "must be a string"),
    ]


def test_bad_input_exits_2_with_one_clear_line(tmp_path, capsys):
    for (cap, ent, t), message in _errors(tmp_path):
        out = tmp_path / "out_err"
        assert run_cli(cap, ent, out, t=t) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert not (out / "curated.jsonl").exists()  # nothing half-written


def test_custom_field_and_ignore_case(tmp_path):
    cap = tmp_path / "p.jsonl"
    cap.write_text('{"text": "An ALPHA wolf"}\n{"text": "nothing"}\n')
    ent = tmp_path / "e.txt"
    ent.write_text("alpha\n")
    assert run_cli(cap, ent, tmp_path / "a", 10, 0, "--field", "text") == 0
    assert (tmp_path / "a" / "curated.jsonl").read_text() == ""
    assert run_cli(cap, ent, tmp_path / "b", 10, 0, "--field", "text", "--ignore-case") == 0
    assert (tmp_path / "b" / "curated.jsonl").read_text() == '{"text": "An ALPHA wolf"}\n'


def test_parallel_pass_equals_sequential(tmp_path):
    cap, ent, _ = write_pool(tmp_path)
    from fmlab.curate import CaptionSource

    src = CaptionSource(cap)
    for n in (2, 3, 7):
        ranges = src.byte_ranges(n)
        assert ranges[0][0] == 0 and ranges[-1][1] == cap.stat().st_size
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        got = [c for r in ranges for b in src.caption_batches(r) for c in b]
        assert got == [c for b in src.caption_batches() for c in b]
    res = {}
    for name, w in (("seq", 1), ("par", 3)):
        res[name] = curate(
            CurateConfig(
                captions=cap, entries=ent, threshold=70, seed=5, out=tmp_path / name, workers=w
            )
        )
    assert res["par"]["workers"] == 3 and res["seq"]["workers"] == 1
    assert (tmp_path / "seq" / "curated.jsonl").read_bytes() == (
        tmp_path / "par" / "curated.jsonl"
    ).read_bytes()


def test_parallel_error_names_the_exact_line(tmp_path, capsys):
    cap = tmp_path / "p.jsonl"
    cap.write_text(
        "".join('{"caption": "alpha x"}\n' for _ in range(300))
        + '{"cap": 1}\n'
        + '{"caption": "alpha"}\n' * 50
    )
    ent = tmp_path / "e.txt"
    ent.write_text("alpha\n")
    assert run_cli(cap, ent, tmp_path / "o", 10, 0, "--workers", "4") == 2
    assert "p.jsonl:301: record has no field 'caption'" in capsys.readouterr().err


def test_gzipped_jsonl_and_null_captions(tmp_path, capsys):
    import gzip

    cap, ent, _ = write_pool(tmp_path)
    gz = tmp_path / "pool.jsonl.gz"
    gz.write_bytes(gzip.compress(cap.read_bytes() + b'{"caption": null}\n'))
    a = curate(CurateConfig(captions=cap, entries=ent, threshold=60, seed=9, out=tmp_path / "a"))
    b = curate(CurateConfig(captions=gz, entries=ent, threshold=60, seed=9, out=tmp_path / "b"))
    assert b["pairs_total"] == a["pairs_total"] + 1 and b["pairs_matched"] == a["pairs_matched"]
    # one uniform per record, in input order: the extra (dropped) last record changes nothing
    assert (tmp_path / "a" / "curated.jsonl").read_bytes() == (
        tmp_path / "b" / "curated.jsonl"
    ).read_bytes()
    assert run_cli(cap, ent, tmp_path / "c", 10, 0, "--workers", "-1") == 2
    assert "workers" in capsys.readouterr().err
