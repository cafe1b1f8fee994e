"""``python -m pipeline run`` keeps the command-line contract: the everyday mistakes stop at the door (exit 2,
one line, no traceback, nothing created or replaced), a finished output is never replaced by other inputs,
Ctrl-C and SIGTERM end a run quietly, progress reads done/total, an empty dataset is not a success.

Real parts: the launcher as a subprocess (its own console, signals sent to its process group as a terminal
does), Beam's local runner, yt-dlp on file:// URLs, videos encoded here. The time bounds asserted are the
contract's ("exits within 15 s of Ctrl-C"), not performance goals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import run
from pipeline.audit import exit_status
from tests import media

ROOT = Path(__file__).resolve().parents[2]
TITLE = "Celeste speedrun gameplay"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *says: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, lines
    for text in says:
        assert text in lines[0], (text, lines[0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three 17 s videos and a catalog of them plus an unreadable row (line 4) and a cooking video."""
    root = tmp_path_factory.mktemp("cli-corpus")
    rows = []
    for n in range(3):
        media.write_video(root / f"v{n}.mp4", fps=10, duration_s=17.0, width=160, height=90)
        rows.append(json.dumps({"id": f"v{n}", "url": f"v{n}.mp4", "title": TITLE, "duration_s": 17}))
    rows.append('{"id": "broken", "url": ')  # line 4: not JSON
    rows.append(json.dumps({"id": "cook", "url": "v0.mp4?x", "title": "cooking", "duration_s": 17}))
    (root / "catalog.jsonl").write_text("\n".join(rows) + "\n")
    (root / "other.jsonl").write_text(rows[0] + "\n")
    return root


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory) -> Path:
    """A finished output of the corpus (the launcher's own console: a subprocess)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    result = cli("run", "--catalog", str(corpus / "catalog.jsonl"), "--output", str(out), "--workers", "1")
    assert result.returncode == 0, result.stderr
    return out


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.parts[len(out.parts)] != "logs"}


def test_a_misspelt_flag_is_refused_with_the_flag_it_resembles(corpus, tmp_path):
    out = tmp_path / "out"
    result = cli("run", "--catalog", str(corpus / "catalog.jsonl"), "--output", str(out), "--clasifier", "m")
    assert_one_line_error(result, "unknown flag --clasifier", "did you mean --classifier?")
    result = cli("run", "--catalog", str(corpus / "catalog.jsonl"), "--output", str(out), "--runnner", "X")
    assert_one_line_error(result, "unknown flag --runnner", "did you mean --runner?")
    assert not out.exists()


def test_beams_own_options_are_accepted_and_a_stray_word_is_not(corpus, tmp_path):
    args = ["--catalog", str(corpus / "catalog.jsonl"), "--output", str(tmp_path / "o")]
    config, _, beam_args = run.parse(args + ["--project", "p", "--region=r", "--experiments", "x"])
    assert beam_args == ["--project", "p", "--region=r", "--experiments", "x"]
    with pytest.raises(SystemExit) as info:
        run.parse(args + ["stray"])
    assert info.value.code == 2


@pytest.mark.parametrize("mistake", ["missing catalog", "catalog is a directory", "output is a file",
                                     "output under a file", "read-only output", "no source", "bad keywords"])
def test_input_and_output_mistakes_stop_before_anything_is_created(mistake, corpus, tmp_path):
    catalog, out = str(corpus / "catalog.jsonl"), tmp_path / "out"
    args = {"missing catalog": ["--catalog", str(tmp_path / "missing.jsonl"), "--output", str(out)],
            "catalog is a directory": ["--catalog", str(tmp_path), "--output", str(out)],
            "output is a file": ["--catalog", catalog, "--output", str(corpus / "v0.mp4")],
            "output under a file": ["--catalog", catalog, "--output", str(corpus / "v0.mp4" / "out")],
            "read-only output": ["--catalog", catalog, "--output", str(tmp_path / "ro" / "out")],
            "no source": ["--output", str(out)],
            "bad keywords": ["--catalog", catalog, "--output", str(out), "--keywords", str(corpus / "v0.mp4")]}
    says = {"missing catalog": "--catalog", "catalog is a directory": "is a directory",
            "output is a file": "--output", "output under a file": "is a file", "read-only output": "not writable",
            "no source": "--catalog FILE", "bad keywords": "--keywords"}
    if mistake == "read-only output":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        (tmp_path / "ro").mkdir(mode=0o555)
    before = sorted(p.name for p in tmp_path.iterdir())
    started = time.monotonic()
    assert_one_line_error(cli("run", *args[mistake]), says[mistake])
    assert time.monotonic() - started < 60  # refused at launch: no Beam job ran
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_classifier_of_another_clip_geometry_is_refused_at_launch(corpus, tmp_path):
    """A model trained on 160x90 clips at 10 FPS, and runs that cut other clips: refused before any work."""
    import csv

    from classifiers.train import TrainConfig, train
    from pipeline.shards import write_shard
    from pipeline.tools.demo_corpus import clips as synthetic

    videos = synthetic.demo_videos(n_clean=4, n_junk_each=1, clips_per_video=1)
    (tmp_path / "shards").mkdir()
    write_shard(str(tmp_path / "shards" / "shard-00000.tar"),
                [synthetic.make_clip(vid, 0, frames[0]) for vid, _, frames in videos])
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("item_id", "score")] + [(v, 5 if k == "clean" else 1) for v, k, _ in videos])
    model = tmp_path / "model"
    train(TrainConfig(labels=str(tmp_path / "labels.csv"), clips=str(tmp_path), out=str(model), folds=2))
    catalog, out = str(corpus / "catalog.jsonl"), tmp_path / "out"
    for flags, says in ((["--clip-size", "64x64"], "64x64 @ 10 FPS"), (["--clip-fps", "5"], "160x90 @ 5 FPS")):
        result = cli("run", "--catalog", catalog, "--output", str(out), "--classifier", str(model), *flags)
        assert_one_line_error(result, f"--classifier {model} was trained on 160x90 @ 10 FPS", says)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{}")
    assert_one_line_error(cli("run", "--catalog", catalog, "--output", str(out), "--classifier", str(broken)),
                          f"--classifier {broken}")
    assert not out.exists()


def test_unreadable_catalog_rows_are_named_with_their_line(finished, corpus):
    rows = pq.read_table(finished / "outcomes").to_pylist()
    assert any(r["item_id"] == "catalog.jsonl:line4" and r["reason"] == "bad_catalog_row" for r in rows)
    result = cli("run", "--catalog", str(corpus / "catalog.jsonl"), "--output", str(finished), "--quiet")
    assert result.returncode == 0, result.stderr
    loud = cli("run", "--catalog", str(corpus / "catalog.jsonl"), "--output", str(finished))
    assert "line 4: not valid JSON" in loud.stderr and "Traceback" not in loud.stderr
    assert "resuming" in loud.stderr and "3 segmented video(s) come from its cache" in loud.stderr


def test_a_finished_output_is_not_replaced_by_other_inputs(finished, corpus):
    before = snapshot(finished)
    for other in (["--catalog", str(corpus / "other.jsonl")], ["--catalog", str(corpus / "catalog.jsonl"),
                                                                "--clip-fps", "5"]):
        result = cli("run", *other, "--output", str(finished))
        assert_one_line_error(result, "holds a dataset made from other inputs", "--overwrite")
    assert "differing: catalogs" in cli("run", "--catalog", str(corpus / "other.jsonl"), "--output",
                                        str(finished)).stderr
    assert snapshot(finished) == before
    same = cli("run", "--catalog", str(corpus / "catalog.jsonl"), "--output", str(finished), "--workers", "2")
    assert same.returncode == 0 and snapshot(finished) == before  # resumed: byte-identical


def test_overwrite_replaces_and_records_the_new_inputs(corpus, finished, tmp_path):
    out = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(finished), str(out)], check=True)
    result = cli("run", "--catalog", str(corpus / "other.jsonl"), "--output", str(out), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert "replacing" in result.stderr
    assert json.loads((out / "run_inputs.json").read_text())["catalogs"][0]["path"].endswith("other.jsonl")
    assert json.loads((out / "stats.json").read_text())["clips"]["kept"] == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert_one_line_error(cli("run", "--catalog", str(corpus / "other.jsonl"), "--output", str(foreign)),
                          "not empty")


def test_progress_reads_done_over_total_for_the_whole_job(finished):
    log = next((finished / "logs").glob("run-*.log")).read_text()
    assert "segment:" in log  # per-video lines go to the log file, not the console
    from pipeline.runtime.progress import progress_line
    line = progress_line({"pass/video/download": 4, "out/search/video/dropped": 1, "pass/video/segment": 3,
                          "out/download/video/failed": 1, "out/segment/video/kept": 2, "pass/clip/quality": 5,
                          "pass/clip/shard": 4, "out/shard/clip/kept": 2}, 10.0, 5)
    assert line == ("search 5/5 rows | download 4/4 videos | segment 2/3 videos | clips 5 cut, 4 scored, "
                    "2 kept | 0.40 videos/s, elapsed 0:00:10, ETA 0:00:02")  # 4 of 5 done in 10 s
    # the fused download and segmentation: a segmentation tallied before its download's registration
    early = progress_line({"pass/video/download": 3, "pass/video/segment": 1, "out/segment/video/kept": 2}, 1.0, 3)
    assert early.startswith("search 3/3 rows | download 2/3 videos | segment 2/2 videos"), early
    # a download tallied before the search's registration of its candidate
    ahead = progress_line({"pass/video/download": 2, "pass/video/segment": 3, "out/download/video/failed": 1}, 1.0, 9)
    assert ahead.startswith("search 4/9 rows | download 4/4 videos | segment 0/3 videos"), ahead


def test_a_run_of_the_cli_shows_progress_and_a_summary(corpus, tmp_path):
    result = cli("run", "--catalog", str(corpus / "catalog.jsonl"), "--output", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    assert progress and progress[-1].startswith("progress: search 5/5 rows | download 3/3 videos | segment 3/3 "
                                                "videos | clips 3 cut, 3 scored, 3 kept")
    assert "kept 3 clips" in result.stdout and "Traceback" not in result.stderr


def test_a_local_dry_run_checks_and_builds_the_graph_but_writes_nothing(corpus, tmp_path):
    result = cli("run", "--catalog", str(corpus / "catalog.jsonl"), "--output", str(tmp_path / "o"),
                 "--dry_run=True")
    assert result.returncode == 0 and "nothing was run or written" in result.stdout, result.stderr
    assert not (tmp_path / "o").exists()


def test_an_empty_dataset_is_exit_65_unless_allowed(corpus, tmp_path):
    catalog = tmp_path / "cooking.jsonl"
    catalog.write_text(json.dumps({"id": "c", "url": str(corpus / "v0.mp4"), "title": "cooking"}) + "\n")
    for extra, code in (([], exit_status.EMPTY), (["--allow-empty"], exit_status.OK)):
        result = cli("run", "--catalog", str(catalog), "--output", str(tmp_path / f"o{len(extra)}"), *extra)
        assert result.returncode == code, result.stderr
    assert "the dataset is empty" in cli("run", "--catalog", str(catalog), "--output", str(tmp_path / "o0")).stderr


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory) -> Path:
    """Six 80 s videos (five clips each): a job long enough to be interrupted in the middle."""
    root = tmp_path_factory.mktemp("long-corpus")
    with open(root / "catalog.jsonl", "w") as f:
        for n in range(6):
            media.write_video(root / f"long{n}.mp4", fps=10, duration_s=80.0, width=160, height=90)
            f.write(json.dumps({"id": f"long{n}", "url": f"long{n}.mp4", "title": TITLE, "duration_s": 80}) + "\n")
    return root


RUN_MARK = "GENIE_TEST_RUN"  # set in a started run's environment: its processes inherit it, whoever adopts them


def _start(corpus: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--catalog", str(corpus / "catalog.jsonl"),
                             "--output", str(out), "--workers", "2", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, RUN_MARK: str(out)})


def _processes_of(out: Path) -> list[str]:
    """The live processes started for the run into ``out`` (launcher, job process, SDK workers, decoders): the
    ones whose environment carries its mark. Other runs on the machine are not counted."""
    mark = f"{RUN_MARK}={out}\0".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes() + b"\0"  # a zombie's is empty
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if mark in environ:
            found.append(f"{pid}: {command!r}")
    return found


def _wait_for_the_first_video(process: subprocess.Popen, out: Path) -> None:
    """Until a worker has segmented its first video (its line in the run's log), at most 120 s."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if any(": segment: long" in log.read_text(errors="replace") for log in out.glob("logs/*.log")):
            return
        time.sleep(0.2)


@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c-to-the-terminal-group", "sigterm-to-the-launcher"])
def test_an_interrupt_stops_the_workers_quietly_and_a_rerun_resumes(signum, to_group, long_corpus, tmp_path):
    out = tmp_path / "out"
    process = _start(long_corpus, out)
    _wait_for_the_first_video(process, out)
    assert process.poll() is None, "the job ended before it could be interrupted"
    sent = time.monotonic()
    if to_group:
        os.killpg(process.pid, signum)  # what a terminal's Ctrl-C does: the whole foreground process group
    else:
        process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert time.monotonic() - sent < 15
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) <= 10 and "Traceback" not in stderr, stderr
    assert "Rerun the same command to continue" in lines[-1]
    assert _processes_of(out) == []
    rerun = _start(long_corpus, out)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "resuming" in err and json.loads((out / "stats.json").read_text())["clips"]["kept"] == 30
