"""A sharded caption pool (folder or glob) curates exactly as the concatenated file."""

from __future__ import annotations

from fmlab.cli.main import main
from fmlab.curate import CurateConfig, curate
from tests.curate.test_cli import write_pool


def split_pool(tmp_path, parts=3):
    cap, ent, _ = write_pool(tmp_path)
    lines = cap.read_text().splitlines(keepends=True)
    shards = tmp_path / "shards"
    shards.mkdir()
    step = -(-len(lines) // parts)
    for k in range(parts):
        (shards / f"part-{k:03d}.jsonl").write_text("".join(lines[k * step:(k + 1) * step]))
    (shards / "README.txt").write_text("not a caption file")
    return cap, ent, shards


def test_folder_and_glob_equal_the_single_file(tmp_path):
    cap, ent, shards = split_pool(tmp_path)
    one = curate(CurateConfig(cap, ent, 100, tmp_path / "one", seed=5))
    folder = curate(CurateConfig(shards, ent, 100, tmp_path / "folder", seed=5))
    glob = curate(CurateConfig(str(shards / "part-*.jsonl"), ent, 100, tmp_path / "glob", seed=5))
    for run in ("folder", "glob"):
        assert (tmp_path / run / "curated.jsonl").read_bytes() == (tmp_path / "one" / "curated.jsonl").read_bytes()
    assert folder["curated_sha256"] == glob["curated_sha256"] == one["curated_sha256"]
    assert folder["captions_files"] == 3 and one["captions_files"] == 1
    assert folder["captions_sha256"] != one["captions_sha256"]  # it hashes the shards


def test_empty_glob_exit_2(tmp_path, capsys):
    _, ent, _ = write_pool(tmp_path)
    rc = main(["curate", "--captions", str(tmp_path / "none-*.jsonl"), "--entries", str(ent),
               "-t", "10", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no caption files" in err and not (tmp_path / "o").exists()

