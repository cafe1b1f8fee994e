"""The command-line contract of ``python -m modeling``: one help that lists every command, one-line usage errors
(exit 2, a suggestion for a misspelt flag, no traceback), typed ``--set``, and ``train``'s pre-flight checks
leaving no run directory behind; training shows readable progress, a finished run is left alone when the command
is run again, and Ctrl-C ends with status 130 and where a rerun resumes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
import torch

from modeling.__main__ import main
from modeling.configs import get_config, parse_overrides
from modeling.progress import clock, finished_line, interrupted_line, progress_line
from schemas.cli import UsageError
from tests.cli_helpers import call_main
from tests.modeling_helpers import write_tiny_shards

PROGRESS = re.compile(r"^step (\d+)/(\d+) \((\d+)%\)  loss [-+.\deE]+  [\d.]+ steps/s  elapsed \d+:\d\d:\d\d  "
                      r"ETA (\d+:\d\d:\d\d|\?)$")


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    return call_main(main, argv, capsys)


def assert_usage_error(code: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and 1 <= len(lines) <= 2, err
    assert lines[-1].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_tiny_shards(tmp_path_factory.mktemp("shards"), n_clips=2, frames=8, clips_per_shard=2)[0]


def test_help_lists_every_command_with_a_description():
    result = subprocess.run([sys.executable, "-m", "modeling", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    for name in ("train", "extract-tokens", "params", "generate", "play", "evaluate", "bc"):
        (line,) = [x for x in result.stdout.splitlines() if x.startswith(f"  {name} ")]
        assert line.strip().endswith("."), line
    assert "130" in result.stdout  # the exit codes are part of the help


@pytest.mark.parametrize("argv, suggestion", [
    (["trian"], "unknown command trian (did you mean train?)"),
    (["--bogus"], "unknown flag --bogus"),
    (["train", "tokenizer", "--shards", "x", "--out", "y", "--confg", "tiny"], "did you mean --config?"),
    (["train", "tokenizer", "--shards", "x", "--out", "y", "--until-stp", "3"], "did you mean --until-step?"),
    (["extract-tokens", "--shards", "x", "--tokenizer", "t", "--out", "o", "--batch", "2"], "--batch"),
    (["params", "--configs", "tiny"], "did you mean --config?"),
    (["generate", "--checkpoint", "r", "--prompt", "p", "--actions", "1", "--out", "o.mp4", "--sed", "1"],
     "did you mean --seed?"),
    (["play", "--checkpoint", "r", "--prompt", "p", "--ports", "1"], "did you mean --port?"),
    (["evaluate", "--checkpoint", "r", "--shards", "s", "--out", "o", "--num-clip", "3"], "did you mean --num-clips?"),
    (["bc", "train", "--expert", "e", "--out", "o", "--epoch", "1"], "did you mean --epochs?"),
])
def test_unknown_commands_and_flags_are_one_line_with_a_suggestion(argv, suggestion, capsys):
    code, _, err = run(argv, capsys)
    assert_usage_error(code, err, suggestion, "--help")


def test_typed_set_converts_to_the_field_type():
    values = parse_overrides(["train_tokenizer.max_steps=12", "train_tokenizer.lr=1e-4",
                              "train_tokenizer.compile=true", "train_lam_dynamics.activation_checkpointing=False",
                              "sampling.temperature=2", "dynamics.action_conditioning=token",
                              "train_tokenizer.betas=0.9,0.95", "precision=fp32"])
    assert values == {"train_tokenizer.max_steps": 12, "train_tokenizer.lr": 1e-4, "train_tokenizer.compile": True,
                      "train_lam_dynamics.activation_checkpointing": False, "sampling.temperature": 2.0,
                      "dynamics.action_conditioning": "token", "train_tokenizer.betas": (0.9, 0.95),
                      "precision": "fp32"}
    assert [type(v) for v in values.values()] == [int, float, bool, bool, float, str, tuple, str]
    assert get_config("tiny", values).train_tokenizer.max_steps == 12


@pytest.mark.parametrize("item, message", [
    ("train_tokenizer.max_steps=abc", "--set train_tokenizer.max_steps=abc: expected an integer (int), got 'abc'"),
    ("train_tokenizer.max_steps=2.5", "expected an integer (int), got '2.5'"),
    ("train_tokenizer.lr=fast", "--set train_tokenizer.lr=fast: expected a number (float), got 'fast'"),
    ("train_tokenizer.compile=maybe", "expected true or false (bool), got 'maybe'"),
    ("train_tokenizer.betas=0.9", "expected 2 comma-separated values (float, float), got '0.9'"),
    ("tokenizer.patch_sise=4", "unknown config key 'tokenizer.patch_sise' (did you mean tokenizer.patch_size?); "
                               "tokenizer has codebook_size"),
    ("optimizer.lr=3", "unknown config section 'optimizer'; sections are dynamics, lam, sampling, tokenizer"),
    ("train_tokenzer.lr=3", "(did you mean train_tokenizer?)"),
    ("dynamics.vocab_size=3", "dynamics.vocab_size follows tokenizer.codebook_size"),
    ("max_steps", "must look like section.field=value"),
])
def test_a_bad_set_is_refused_before_anything_is_written(item, message, shards, tmp_path, capsys):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_overrides([item])
    out = tmp_path / "run"
    code, _, err = run(["train", "tokenizer", "--shards", shards, "--out", str(out), "--set", item], capsys)
    assert_usage_error(code, err, message)
    assert not out.exists()


@pytest.mark.parametrize("phase, extra, message", [
    ("tokenizer", ["--shards", "{tmp}/none-*.tar"], "no shards matched"),
    ("lam-dynamics", [], "train lam-dynamics needs --tokenizer"),
    ("lam-dynamics", ["--tokenizer", "{tmp}/no-run"], "is not a run directory"),
    ("dynamics", [], "train dynamics needs --init"),
    ("tokenizer", ["--until-step", "0"], "--until-step must be >= 1, got 0"),
    ("tokenizer", ["--num-workers", "-1"], "--num-workers must be >= 0"),
    ("tokenizer", ["--init", "{tmp}/x"], "train tokenizer takes no --init"),
    ("tokenizer", ["--tokenizer", "{tmp}/x"], "train tokenizer takes no --tokenizer"),
    ("tokenizer", ["--config", "huge"], "invalid choice: 'huge'"),
    ("tokenizer", ["--set", "dynamics.action_conditioning=tokn"], "action_conditioning must be one of"),
    ("tokenizer", ["--set", "tokenizer.enc_heads=5"], "dim 48 must split into 5 heads"),
    ("tokenizer", ["--set", "precision=fp16"], "precision must be one of"),
    ("tokenizer", ["--set", "sampling.steps=0"], "MaskGIT steps must be >= 1"),
])
def test_train_preflight_mistakes_exit_2_and_create_nothing(phase, extra, message, shards, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", phase, "--shards", shards, "--out", str(out), *(x.format(tmp=tmp_path) for x in extra)]
    code, _, err = run(argv, capsys)
    assert_usage_error(code, err, message)
    assert not out.exists()


def test_out_that_is_a_file_is_refused(shards, tmp_path, capsys):
    out = tmp_path / "run"
    out.write_text("not a run")
    code, _, err = run(["train", "tokenizer", "--shards", shards, "--out", str(out)], capsys)
    assert_usage_error(code, err, "is a file, not a run directory")
    assert out.read_text() == "not a run"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused_before_the_run_directory(shards, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run(["train", "tokenizer", "--shards", shards, "--out", str(out), "--device", "cuda"], capsys)
    assert_usage_error(code, err, "--device cuda: CUDA is not available")
    assert not out.exists()


def test_progress_line_format():
    line = progress_line(120, 1000, 3.41234, steps_done=120, elapsed_s=52)
    assert line == "step 120/1000 (12%)  loss 3.412  2.31 steps/s  elapsed 0:00:52  ETA 0:06:21"
    assert PROGRESS.match(line)
    assert progress_line(10, 10, 0.5, steps_done=0, elapsed_s=0).endswith("elapsed 0:00:00  ETA ?")
    assert clock(3600 * 27 + 61) == "27:01:01" and clock(-1) == "?"
    assert finished_line("runs/tok", 1000, 433, 1000, 1000) == "wrote runs/tok (1000 steps in 0:07:13)"
    assert "at step 4 of 10" in finished_line("runs/tok", 4, 3, 4, 10)
    assert interrupted_line(7, 5) == ("interrupted at step 7; rerun the same command to resume from step 5 "
                                      "(the last checkpoint)")
    assert interrupted_line(3, None).startswith("interrupted at step 3 before any checkpoint")


def test_training_shows_progress_and_a_finished_run_is_left_alone(shards, tmp_path, capsys):
    out = tmp_path / "tok"
    argv = ["train", "tokenizer", "--shards", shards, "--out", str(out)]
    settings = ["--set", "train_tokenizer.max_steps=2", "--set", "train_tokenizer.log_every=1",
                "--set", "train_tokenizer.lr=1e-3", "--set", "train_tokenizer.activation_checkpointing=false"]
    code, stdout, err = run([*argv, *settings, "--until-step", "1"], capsys)
    assert code == 0, err
    lines = stdout.splitlines()
    assert [m.group(1, 2, 3) for m in map(PROGRESS.match, lines) if m] == [("1", "1", "100")]
    assert re.fullmatch(rf"wrote {re.escape(str(out))} \(1 step in \d+:\d\d:\d\d\); the run is at step 1 of 2: "
                        r"run it again \(without --until-step\) to continue", lines[-1])
    saved = json.loads((out / "config.json").read_text())["genie"]["train_tokenizer"]
    assert (saved["max_steps"], saved["lr"], saved["activation_checkpointing"]) == (2, 1e-3, False)

    code, stdout, _ = run([*argv, "--until-step", "1"], capsys)
    assert code == 0 and stdout.strip() == f"already at step 1 (--until-step 1; the run ends at 2): {out}"
    code, stdout, err = run(argv, capsys)  # resumes and finishes
    lines = stdout.splitlines()
    assert code == 0 and [m.group(1, 2) for m in map(PROGRESS.match, lines) if m] == [("2", "2")], err
    assert lines[-1].startswith(f"wrote {out} (1 step in ")
    # machine-readable metrics stay as they were: one JSON line per logged step
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, stdout, err = run(argv, capsys)
    assert code == 0 and stdout.strip() == f"already complete at step 2: {out}" and err == ""
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files  # nothing re-saved
    # an existing run keeps its own settings: another --set or --config is refused, not silently ignored
    code, _, err = run([*argv, "--set", "train_tokenizer.max_steps=5"], capsys)
    assert_usage_error(code, err, "--set is not allowed")
    code, _, err = run([*argv, "--config", "coinrun"], capsys)
    assert_usage_error(code, err, "is a 'tiny' run", "--config coinrun")


def test_ctrl_c_exits_130_with_where_it_resumes(shards, tmp_path):
    out = tmp_path / "tok"
    cmd = [sys.executable, "-u", "-m", "modeling", "train", "tokenizer", "--shards", shards, "--out", str(out),
           "--set", "train_tokenizer.log_every=1", "--set", "train_tokenizer.ckpt_every=1"]
    # SIGINT back to its default in the child: a shell may have started the tests with it ignored
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:
            if line.startswith("step 2/"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    (line,) = err.strip().splitlines()
    step = int(re.fullmatch(r"interrupted at step (\d+); rerun the same command to resume.*", line)[1])
    assert step >= 2 and (out / "checkpoints" / "latest.pt").is_file()
