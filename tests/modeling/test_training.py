"""Training end to end on real shards through the CLI: run directories, exact resume of all three phases (and a
warning when the data layout changes), the lam-dynamics phase on a trained tokenizer and that it learns,
loading models back, token pre-extraction and its consistency checks, configs, the schedule, and clear
errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from modeling.__main__ import main
from modeling.checkpoint import (
    load_checkpoint,
    load_genie,
    load_lam,
    load_tokenizer,
    read_run_config,
    save_checkpoint,
    write_run_config,
)
from modeling.configs import GenieConfig, TrainConfig, get_config
from modeling.data import LoaderConfig, clip_windows, shard_geometry, to_float_video
from modeling.dynamics import DynamicsModel
from modeling.lam import LatentActionModel
from modeling.schedule import lr_at
from modeling.token_shards import token_windows
from modeling.tokenizer import VideoTokenizer
from modeling.train import describe_params, resume_data
from schemas.shard_source import ShardError
from tests.modeling_helpers import write_tiny_shards

torch.set_num_threads(1)
FAST = ["--set", "train_tokenizer.log_every=1", "--set", "train_tokenizer.warmup_steps=2",
        "--set", "train_tokenizer.max_steps=10", "--set", "train_tokenizer.ckpt_every=3",
        "--set", "train_tokenizer.image_every=4", "--set", "tokenizer.usage_decay=0.5"]  # resets within 10 steps


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards")
    write_tiny_shards(directory, n_clips=6, frames=16, clips_per_shard=3)
    return str(directory / "shard-*.tar")


@pytest.fixture(scope="module")
def tokenizer_run(shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tok"
    assert main(["train", "tokenizer", "--shards", shards, "--config", "tiny", "--out", str(run), *FAST]) == 0
    return run


def _losses(run) -> dict[int, tuple[float, float, int]]:
    return {m["step"]: (m["loss"], m["psnr"], m["dead_code_resets"])
            for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def test_tokenizer_run_directory(tokenizer_run):
    cfg, phase, tok = read_run_config(tokenizer_run)
    assert phase == "tokenizer" and tok is None and cfg.name == "tiny"
    assert (tokenizer_run / "checkpoints" / "latest.pt").is_file()
    assert sorted(p.name for p in (tokenizer_run / "checkpoints").glob("step-*.pt")) == [
        "step-000000006.pt", "step-000000009.pt", "step-000000010.pt"]  # keep_checkpoints=3
    assert list((tokenizer_run / "tb").glob("events.out.tfevents.*"))
    assert (tokenizer_run / "samples" / "step-000000004.png").is_file()
    metrics = [json.loads(line) for line in (tokenizer_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 11))
    assert {"psnr", "perplexity", "codes_used", "tokenizer_code_usage", "lr", "grad_norm"} <= set(metrics[-1])
    assert metrics[-1]["psnr"] > metrics[0]["psnr"]
    model = load_tokenizer(tokenizer_run)
    assert isinstance(model, VideoTokenizer) and not model.training


def _metrics(run) -> dict[int, dict[str, float]]:
    """Every logged metric per step, minus the wall-clock throughput."""
    return {m["step"]: {k: v for k, v in m.items() if k != "windows_per_s"}
            for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def test_resume_reproduces_the_uninterrupted_run_exactly(shards, tokenizer_run, tmp_path, capsys):
    run = tmp_path / "resumed"
    base = ["train", "tokenizer", "--shards", shards, "--config", "tiny", "--out", str(run), *FAST]
    assert main([*base, "--until-step", "4"]) == 0
    assert max(_losses(run)) == 4
    data = load_checkpoint(run)["data"]
    assert {k: data[k] for k in ("batches", "world", "num_workers", "shuffle_buffer", "micro_batch")} == {
        "batches": 4, "world": 1, "num_workers": 0, "shuffle_buffer": 16, "micro_batch": 4}
    assert len(data["positions"]) == 1 and set(data["positions"][0]) == {0}  # one rank, one loader stream
    capsys.readouterr()
    resume = ["train", "tokenizer", "--shards", shards, "--out", str(run)]  # the run's config.json is used
    assert main(resume) == 0
    assert "warning" not in capsys.readouterr().out
    uninterrupted = _losses(tokenizer_run)
    resumed = _losses(run)
    assert resumed == uninterrupted  # every step, bit for bit (json keeps the float exactly)
    assert uninterrupted[10][2] > uninterrupted[4][2]  # dead-code resets happened after the resume point


def test_resume_with_another_data_layout_warns(shards, tmp_path, capsys):
    run = tmp_path / "relayout"
    assert main(["train", "tokenizer", "--shards", shards, "--out", str(run), *FAST, "--until-step", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "tokenizer", "--shards", shards, "--out", str(run), "--num-workers", "2",
                 "--until-step", "3"]) == 0
    out = capsys.readouterr().out
    assert "warning: resuming with num_workers 2 (checkpoint: 0)" in out and "not exact" in out
    assert "fresh shuffle (data seed 2)" in out  # seed 0 + 2 batches consumed: not a replay of the first ones
    assert max(_losses(run)) == 3 and load_checkpoint(run)["data"]["num_workers"] == 2
    # A changed shuffle buffer keeps each worker's position (nothing replayed or skipped), and says so too.
    saved = {"batches": 8, "seed": 0, "world": 1, "num_workers": 2, "shuffle_buffer": 16, "micro_batch": 4,
             "positions": [{0: {"worker": 0}, 1: {"worker": 1}}]}
    logged = []
    layout = {"world": 1, "num_workers": 2, "shuffle_buffer": 64, "micro_batch": 4}
    assert resume_data(saved, layout, 0, logged.append) == (0, saved["positions"][0])
    assert logged == ["warning: resuming with shuffle_buffer 64 (checkpoint: 16): the data order differs from "
                      "the uninterrupted run, so the resume is not exact"]
    assert resume_data(saved, {**layout, "shuffle_buffer": 16}, 0, logged.append) == (0, saved["positions"][0])
    assert len(logged) == 1


LAM_DYNAMICS = ["--set", "train_lam_dynamics.max_steps=24", "--set", "train_lam_dynamics.log_every=1",
                "--set", "dynamics.action_conditioning=token"]


@pytest.fixture(scope="module")
def genie_run(shards, tokenizer_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "genie"
    argv = ["train", "lam-dynamics", "--shards", shards, "--config", "tiny", "--tokenizer", str(tokenizer_run),
            "--out", str(run), *LAM_DYNAMICS]
    assert main(argv) == 0
    return run


def test_lam_dynamics_phase_learns_and_loads(shards, tokenizer_run, genie_run):
    run = genie_run
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"lam_loss", "lam_psnr", "lam_codes_used", "lam_code_usage", "dynamics_loss", "dynamics_acc"} <= set(
        metrics[-1])
    # 24 steps on 6 clips: the dynamics loss starts at chance (ln 64 = 4.16 for the tiny codebook) and ends near
    # 0.4 (measured with two seeds), the LAM's reconstruction error falls below the copy of x_t it starts from.
    # The margins leave room for noise but not for a phase whose optimiser, masking or conditioning is broken.
    first, last = metrics[:3], metrics[-3:]
    mean = lambda rows, key: sum(m[key] for m in rows) / len(rows)  # noqa: E731
    # the first logged step is near chance (measured 3.57-4.2: the logged loss already follows one update)
    assert metrics[0]["dynamics_loss"] > 0.6 * math.log(64)
    assert mean(last, "dynamics_loss") < 0.3 * mean(first, "dynamics_loss")
    assert mean(last, "lam_loss") < 0.95 * mean(first, "lam_loss")  # the LAM's residual head starts at a copy of x_t
    config = json.loads((run / "config.json").read_text())
    assert config["phase"] == "lam-dynamics" and config["tokenizer_run"] == str(tokenizer_run.resolve())
    tokenizer, lam, dynamics, cfg = load_genie(run)
    assert isinstance(lam, LatentActionModel) and isinstance(dynamics, DynamicsModel)
    assert not (tokenizer.training or lam.training or dynamics.training)
    assert cfg.dynamics.action_conditioning == "token"
    # The tokenizer a lam-dynamics run loads is the trained one, unchanged by this phase.
    reference = load_tokenizer(tokenizer_run)
    for a, b in zip(tokenizer.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    video = to_float_video(next(iter(clip_windows(shards, LoaderConfig(window=4, batch_size=2))))["video"])
    tokens = tokenizer.encode(video)
    logits = dynamics(tokens, lam.infer_actions(video))
    assert logits.shape == (*tokens.shape, cfg.dynamics.vocab_size)


def test_lam_dynamics_resume_reproduces_the_uninterrupted_run_exactly(shards, tokenizer_run, genie_run, tmp_path):
    run = tmp_path / "genie-resumed"
    argv = ["train", "lam-dynamics", "--shards", shards, "--config", "tiny", "--tokenizer", str(tokenizer_run),
            "--out", str(run), *LAM_DYNAMICS, "--until-step", "3"]
    assert main(argv) == 0
    assert main(["train", "lam-dynamics", "--shards", shards, "--out", str(run), "--until-step", "6"]) == 0
    reference = _metrics(genie_run)
    assert _metrics(run) == {step: reference[step] for step in range(1, 7)}  # LAM and dynamics losses, bit for bit


LAM_ONLY = ["--set", "train_lam_dynamics.max_steps=24", "--set", "train_lam_dynamics.log_every=1",
            "--set", "train_lam_dynamics.image_every=12"]


def test_lam_phase_trains_the_lam_alone_and_resumes_exactly(shards, tmp_path):
    """``train lam``: the LAM on pixels without a tokenizer (what bc label needs); it learns, loads through
    ``load_lam`` (and so does a lam-dynamics run's), is refused as a tokenizer, and resumes bit for bit."""
    run = tmp_path / "lam"
    assert main(["train", "lam", "--shards", shards, "--config", "tiny", "--out", str(run), *LAM_ONLY]) == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"lam_loss", "lam_psnr", "lam_codes_used", "lam_code_usage"} <= set(metrics[-1])
    assert not any(k.startswith("dynamics") for k in metrics[-1])
    mean = lambda rows: sum(m["lam_loss"] for m in rows) / len(rows)  # noqa: E731
    assert mean(metrics[-3:]) < 0.95 * mean(metrics[:3])  # as in the lam-dynamics phase (from a copy of x_t)
    assert read_run_config(run)[1] == "lam" and read_run_config(run)[2] is None
    assert set(load_checkpoint(run)["models"]) == {"lam"}
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-000000012.png", "step-000000024.png"]
    lam, cfg = load_lam(run)
    assert isinstance(lam, LatentActionModel) and not lam.training
    video = to_float_video(next(iter(clip_windows(shards, LoaderConfig(window=16, batch_size=2))))["video"])
    window = cfg.lam.num_frames
    # A clip longer than the trained window: windows of T frames sharing one frame, each as the LAM sees it.
    clip_actions = lam.infer_clip_actions(video)
    assert clip_actions.shape == (2, 15)
    assert torch.equal(clip_actions[:, :window - 1], lam.infer_actions(video[:, :window]))
    assert torch.equal(clip_actions[:, window - 1:2 * (window - 1)],
                       lam.infer_actions(video[:, window - 1:2 * window - 1]))
    with pytest.raises(ValueError, match="holds a LAM, no tokenizer"):
        load_tokenizer(run)
    assert main(["train", "lam", "--shards", shards, "--tokenizer", str(run), "--out", str(tmp_path / "x")]) == 2
    resumed = tmp_path / "lam-resumed"
    assert main(["train", "lam", "--shards", shards, "--config", "tiny", "--out", str(resumed), *LAM_ONLY,
                 "--until-step", "5"]) == 0
    assert main(["train", "lam", "--shards", shards, "--out", str(resumed), "--until-step", "9"]) == 0
    reference = _metrics(run)
    assert _metrics(resumed) == {step: reference[step] for step in range(1, 10)}


def test_load_lam_reads_every_run_that_trained_one(tokenizer_run, genie_run):
    lam, _ = load_lam(genie_run)
    _, reference, _, _ = load_genie(genie_run)
    for a, b in zip(lam.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="has no LAM"):
        load_lam(tokenizer_run)


def test_extract_tokens_round_trip(shards, tokenizer_run, tmp_path):
    out = tmp_path / "tokens"
    assert main(["extract-tokens", "--shards", shards, "--tokenizer", str(tokenizer_run), "--out", str(out),
                 "--clips-per-shard", "4"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 6 and summary["frames"] == 6 * 16 and summary["shards"] == 2
    tokenizer = load_tokenizer(tokenizer_run)
    loader = clip_windows(shards, LoaderConfig(window=4, batch_size=6, shuffle=False, windows_per_clip=4))
    videos = {}
    for batch in loader:
        for key, start, video in zip(batch["key"], batch["start"].tolist(), batch["video"], strict=True):
            videos[(key, start)] = video
    seen = 0
    for batch in token_windows(str(out), LoaderConfig(window=4, batch_size=5, shuffle=False)):
        for key, start, tokens in zip(batch["key"], batch["start"].tolist(), batch["tokens"], strict=True):
            expected = tokenizer.encode(to_float_video(videos[(key, start)][None]))[0]
            assert torch.equal(tokens, expected)
            seen += 1
    assert seen == 6


@pytest.fixture(scope="module")
def latent_tokens(shards, tokenizer_run, genie_run, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("tokens") / "latent"
    assert main(["extract-tokens", "--shards", shards, "--tokenizer", str(tokenizer_run), "--lam", str(genie_run),
                 "--out", str(tokens)]) == 0
    return tokens


DYNAMICS = ["--set", "train_lam_dynamics.max_steps=4", "--set", "train_lam_dynamics.log_every=1"]


def test_dynamics_phase_on_token_shards(shards, tokenizer_run, genie_run, latent_tokens, tmp_path):
    tokens = latent_tokens
    _, lam, _, _ = load_genie(genie_run)
    batch = next(iter(token_windows(str(tokens), LoaderConfig(window=4, batch_size=2, shuffle=False))))
    video = to_float_video(next(iter(clip_windows(shards, LoaderConfig(window=4, batch_size=2,
                                                                       shuffle=False))))["video"])
    # Both action lists hold the action AFTER frame k, as the clip shards do; the last frame has no latent one.
    assert torch.equal(batch["latent_actions"][:, :-1], lam.infer_actions(video))
    assert (batch["latent_actions"][:, -1] == -1).all()
    assert torch.equal(batch["actions"], next(iter(clip_windows(shards, LoaderConfig(window=4, batch_size=2,
                                                                                     shuffle=False))))["actions"])

    run = tmp_path / "dyn"
    argv = ["train", "dynamics", "--shards", str(tokens), "--init", str(genie_run), "--out", str(run), *DYNAMICS]
    assert main(argv) == 0
    assert json.loads((run / "config.json").read_text())["init_run"] == str(genie_run.resolve())
    _, lam2, dynamics2, cfg = load_genie(run)
    _, _, dynamics1, _ = load_genie(genie_run)
    for a, b in zip(lam.state_dict().values(), lam2.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the LAM is frozen in this phase
    assert not all(torch.equal(a, b) for a, b in zip(dynamics1.state_dict().values(),
                                                     dynamics2.state_dict().values(), strict=True))
    # Token shards without latent actions cannot train the dynamics model: say so.
    bare = tmp_path / "bare"
    assert main(["extract-tokens", "--shards", shards, "--tokenizer", str(tokenizer_run), "--out", str(bare)]) == 0
    with pytest.raises(ValueError, match="--lam"):
        from modeling.train import train

        train("dynamics", str(bare), tmp_path / "dyn2", init_run=str(genie_run), log=lambda *a: None)


def test_dynamics_phase_resume_reproduces_the_uninterrupted_run_exactly(genie_run, latent_tokens, tmp_path):
    runs = {name: tmp_path / name for name in ("whole", "resumed")}
    for name, until in (("whole", []), ("resumed", ["--until-step", "2"])):
        argv = ["train", "dynamics", "--shards", str(latent_tokens), "--init", str(genie_run),
                "--out", str(runs[name]), *DYNAMICS, *until]
        assert main(argv) == 0
    assert main(["train", "dynamics", "--shards", str(latent_tokens), "--out", str(runs["resumed"])]) == 0
    whole = _metrics(runs["whole"])
    assert sorted(whole) == [1, 2, 3, 4] and _metrics(runs["resumed"]) == whole


def test_token_shards_must_match_the_model(shards, tokenizer_run, genie_run, latent_tokens, tmp_path, capsys):
    # A LAM run trained on another tokenizer: its dynamics model would not understand these tokens.
    other = tmp_path / "other-tok"
    assert main(["train", "tokenizer", "--shards", shards, "--out", str(other), *FAST,
                 "--set", "train_tokenizer.max_steps=1"]) == 0
    capsys.readouterr()
    assert main(["extract-tokens", "--shards", shards, "--tokenizer", str(other), "--lam", str(genie_run),
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --lam") and f"trained on tokenizer {tokenizer_run.resolve()}" in err
    # Token shards of another grid or vocabulary than the model being trained are refused by the loader.
    with pytest.raises(ShardError, match=r"token grid \(6, 11\), the model needs \(5, 5\)"):
        next(iter(token_windows(str(latent_tokens), LoaderConfig(window=4, batch_size=1), token_grid=(5, 5))))
    with pytest.raises(ShardError, match="codebook size 64, the model needs 1024"):
        next(iter(token_windows(str(latent_tokens), LoaderConfig(window=4, batch_size=1), codebook_size=1024)))
    assert next(iter(token_windows(str(latent_tokens), LoaderConfig(window=4, batch_size=1), token_grid=(6, 11),
                                   codebook_size=64)))["tokens"].shape == (1, 4, 6, 11)
    # Shards from before the action convention was unified (no "format") are refused, not misread.
    import webdataset as wds

    raw = next(iter(wds.DataPipeline(wds.SimpleShardList(sorted(map(str, latent_tokens.glob("*.tar")))),
                                     wds.tarfile_to_samples())))
    meta = json.loads(raw["json"])
    del meta["format"]
    with wds.TarWriter(str(tmp_path / "old.tar")) as sink:
        sink.write({"__key__": raw["__key__"], "tokens.npy": raw["tokens.npy"], "json": json.dumps(meta).encode()})
    with pytest.raises(ShardError, match="format 1"):
        next(iter(token_windows(str(tmp_path / "old.tar"), LoaderConfig(window=4, batch_size=1))))


def test_frame_size_comes_from_the_data(tmp_path, capsys):
    """64x64 clips (Appendix F's CoinRun geometry, recorded in each sample by the pipeline): read back from the
    shard, refused in one line by a 160x90 config, and trained on by a config of their size."""
    square = write_tiny_shards(tmp_path / "square", n_clips=2, frames=8, height=64, width=64)
    assert shard_geometry(square) == (64, 64, 10.0)
    assert main(["train", "tokenizer", "--shards", square[0], "--config", "tiny", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "64x64" in err[0] and "160x90" in err[0]
    size = ["--set", "tokenizer.frame_height=64", "--set", "tokenizer.frame_width=64"]
    assert main(["train", "tokenizer", "--shards", square[0], "--config", "tiny", "--out", str(tmp_path / "b"),
                 *size, "--set", "train_tokenizer.max_steps=1", "--set", "train_tokenizer.batch_size=2"]) == 0
    tokenizer = load_tokenizer(tmp_path / "b")
    assert (tokenizer.cfg.frame_height, tokenizer.cfg.frame_width) == (64, 64)
    video = to_float_video(next(iter(clip_windows(square, LoaderConfig(window=4, batch_size=2),
                                                  frame_size=(64, 64))))["video"])
    assert tokenizer.decode(tokenizer.encode(video)).shape == (2, 4, 3, 64, 64)


def test_clear_cli_errors(shards, tmp_path, capsys):
    assert main(["train", "tokenizer", "--shards", str(tmp_path / "none-*.tar"), "--out", str(tmp_path / "a")]) == 2
    assert "no shards matched" in capsys.readouterr().err
    small = write_tiny_shards(tmp_path / "small", n_clips=1, frames=8, height=72, width=128)
    assert main(["train", "tokenizer", "--shards", small[0], "--out", str(tmp_path / "b")]) == 2
    assert "128x72" in capsys.readouterr().err
    # A bad shard after a good one is caught by a loader worker, and reported as one line too.
    good = sorted(__import__("glob").glob(shards))[0]
    assert main(["train", "tokenizer", "--shards", f"{good}::{small[0]}", "--out", str(tmp_path / "b2"),
                 "--num-workers", "2", "--set", "train_tokenizer.max_steps=50"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "128x72" in err[-1] and "Traceback" not in err[-1]
    assert main(["train", "tokenizer", "--shards", shards, "--out", str(tmp_path / "c"),
                 "--set", "tokenizer.patch_sise=4"]) == 2
    assert "tokenizer.patch_sise" in capsys.readouterr().err
    assert main(["train", "lam-dynamics", "--shards", shards, "--out", str(tmp_path / "d")]) == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_configs():
    with pytest.raises(KeyError, match="unknown config 'huge'"):
        get_config("huge")
    with pytest.raises(KeyError, match="lam.num_action"):
        get_config("tiny", {"lam.num_action": 3})
    with pytest.raises(KeyError, match="sections are"):
        get_config("tiny", {"optimizer.lr": 3})
    cfg = get_config("coinrun", {"lam.num_actions": 7})
    assert cfg.dynamics.num_actions == 7  # the dynamics model follows the LAM and the tokenizer
    assert cfg.dynamics.vocab_size == 1024 and cfg.dynamics.token_grid == (16, 16)  # 64x64 frames, patch 4
    assert GenieConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    coinrun = get_config("coinrun")
    assert coinrun.frame_size == (64, 64) and (coinrun.lam.frame_height, coinrun.lam.frame_width) == (64, 64)
    assert coinrun.lam.token_grid == (4, 4) and coinrun.sampling.temperature == 1.0
    assert get_config("platformers-small").frame_size == (90, 160)
    assert get_config("tiny", {"tokenizer.frame_width": 64}).lam.frame_width == 64  # one frame size per Genie
    assert (coinrun.tokenizer.enc_layers, coinrun.tokenizer.dec_layers, coinrun.tokenizer.enc_dim) == (8, 8, 512)
    assert (coinrun.lam.enc_layers, coinrun.lam.num_actions, coinrun.dynamics.layers) == (8, 6, 12)
    assert (coinrun.train_tokenizer.batch_size, coinrun.train_lam_dynamics.batch_size) == (48, 36)
    total = describe_params(get_config("platformers-small"))["total"]
    assert 2e8 < total < 1e9  # "a few hundred million parameters"


def test_a_config_json_naming_dynamics_num_actions_loads(tmp_path):
    """The action count is declared by the LAM alone: config.json leaves the dynamics' copy out, and a run whose
    config.json names it too loads as a whole Genie with the LAM's count."""
    cfg = get_config("tiny")
    doc = cfg.to_dict()
    assert "num_actions" not in doc["dynamics"] and doc["lam"]["num_actions"] == cfg.dynamics.num_actions == 4
    tokenizer_run, run = tmp_path / "tok", tmp_path / "genie"
    write_run_config(tokenizer_run, cfg, "tokenizer")
    save_checkpoint(tokenizer_run, {"models": {"tokenizer": VideoTokenizer(cfg.tokenizer).state_dict()}}, 1)
    doc["dynamics"]["num_actions"] = cfg.lam.num_actions
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"genie": doc, "phase": "lam-dynamics",
                                                 "tokenizer_run": str(tokenizer_run)}))
    save_checkpoint(run, {"models": {"lam": LatentActionModel(cfg.lam).state_dict(),
                                     "dynamics": DynamicsModel(cfg.dynamics).state_dict()}}, 1)
    _, lam, dynamics, loaded = load_genie(run)
    assert loaded == cfg and dynamics.cfg.num_actions == lam.num_actions == 4
    with pytest.raises(KeyError, match="unknown config key 'dynamics.num_actions'"):
        get_config("tiny", {"dynamics.num_actions": 4})


def test_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1) and lr_at(500, cfg) == pytest.approx(0.1)
    values = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_gradient_accumulation_matches_one_big_batch(shards, tmp_path):
    from modeling.checkpoint import load_checkpoint

    states = []
    for accum in (1, 2):
        run = tmp_path / f"accum{accum}"
        assert main(["train", "tokenizer", "--shards", shards, "--out", str(run), *FAST, "--until-step", "2",
                     "--set", f"train_tokenizer.grad_accum={accum}",
                     "--set", "train_tokenizer.activation_checkpointing=true"]) == 0
        states.append(load_checkpoint(run)["models"]["tokenizer"])
    for name, value in states[0].items():
        if name != "vq.usage":  # the usage EMA is updated once per micro-batch
            torch.testing.assert_close(states[1][name], value, atol=2e-5, rtol=1e-4)


def test_ddp_under_torchrun_on_cpu(shards, tmp_path):
    """Two gloo processes: the run completes, rank 0 writes the checkpoint, and it loads."""
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "modeling", "train", "tokenizer",
           "--shards", shards, "--out", str(run), "--device", "cpu", "--set", "train_tokenizer.max_steps=3",
           "--set", "train_tokenizer.log_every=1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert isinstance(load_tokenizer(run), VideoTokenizer)


def test_counted_training_flops_agree_with_the_6nd_rule():
    """benchmarks/train_throughput.py counts FLOPs on the meta device; for the tokenizer (every parameter but the
    codebook touches every token) that must be close to the 6 x params x tokens rule of thumb."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = get_config("tiny")
    flops = bench.count_flops("tokenizer", cfg, batch=4)
    h, w = cfg.tokenizer.token_grid
    params = describe_params(cfg)["tokenizer"] - cfg.tokenizer.codebook_size * cfg.tokenizer.latent_dim
    rule = 6 * params * 4 * cfg.tokenizer.num_frames * h * w
    assert 0.7 < flops / rule < 1.5, flops / rule
    assert bench.count_flops("lam-dynamics", cfg, batch=4) > 0
