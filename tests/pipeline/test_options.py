"""The command line of ``python -m pipeline run``: the flag set and defaults are pinned, and each option is
declared once, on the config field it sets (``pipeline.cli.options``); no stage reads another stage's flags."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path

import pytest

from pipeline import download, quality, run, search, segment
from pipeline.cli import options
from pipeline.site import breaker, site_access
from pipeline.site.breaker import BreakerConfig
from pipeline.site.site_access import SiteAccessConfig
from pipeline.video import cut

# flag -> argparse default, in --help order (--no-isolation stores into SegmentConfig.isolate: default True)
FLAGS = {
    "--output": None, "--shard-size-mb": 256.0, "--table-part-rows": 20000, "--slice-outcomes": 50000, "--workers": None,
    "--delete-videos": False, "--in-process": False,
    "--overwrite": False, "--allow-empty": False, "--quiet": False, "--no-worker-plugin": True, "--detach": False,
    "--force-lease": False, "--log-level": "warning",
    # search
    "--keywords": None, "--catalog": None, "--youtube": False, "--youtube-per-query": 20,
    "--youtube-date-sorted": False, "--youtube-max-queries": None, "--youtube-query-template": "{game} {action}",
    "--youtube-sleep-s": 1.0, "--min-duration-s": None, "--max-duration-s": None,
    # download
    "--download-dir": None, "--retries": 3, "--fragment-retries": 3, "--rate-limit": None, "--sleep-interval": 0.0,
    "--max-filesize": 2 * 1024**3, "--min-height": 360, "--js-runtime": None, "--retry-failed": False,
    "--remote-components": None,
    # site access: the network options search and download share
    "--youtube-qps": 4.0, "--site-qps": None, "--unthrottled-host": None, "--default-site-qps": 50.0,
    "--cookies": None, "--proxy": None, "--proxies-file": None, "--breaker-window": 20,
    "--breaker-open-share": 0.8, "--socket-timeout": 30.0, "--max-backoff-s": 60.0,
    # segmentation
    "--clip-size": (160, 90), "--clip-fps": 10, "--clip-seconds": 16.0, "--clip-stride-s": None,
    "--skip-start-s": 0.0, "--skip-end-s": 0.0, "--fit": "crop", "--decoder": "decord", "--decord-max-mb": 256.0,
    "--x264-preset": "faster", "--crf": 20, "--no-isolation": True, "--video-timeout-s": 3600.0,
    # quality
    "--classifier": None, "--quality-threshold": None, "--quality-batch-size": 32,
}
METAVARS = {"--site-qps": "HOST=N", "--unthrottled-host": "HOST", "--default-site-qps": "N", "--clip-size": "WxH", "--decord-max-mb": "MB", "--classifier": "MODEL_DIR", "--quality-threshold": "T"}
FULL = ["--catalog", "a.jsonl", "--catalog", "b.csv", "--youtube", "--youtube-per-query", "5", "--youtube-date-sorted",
        "--youtube-max-queries", "3", "--youtube-query-template", "{game} x", "--youtube-sleep-s", "2",
        "--min-duration-s", "20", "--max-duration-s", "600", "--download-dir", "/tmp/v", "--retries", "5",
        "--fragment-retries", "7", "--socket-timeout", "12", "--max-backoff-s", "9", "--rate-limit", "2M",
        "--sleep-interval", "0.5", "--max-filesize", "500M", "--min-height", "480", "--js-runtime", "node",
        "--retry-failed", "--remote-components", "ejs:npm", "--youtube-qps", "2", "--site-qps", "a.org=3", "--site-qps", "b.org=0.5",
        "--unthrottled-host", "own.net", "--default-site-qps", "6", "--proxy", "socks5://h:1",
        "--breaker-window", "7", "--breaker-open-share", "0.3", "--clip-size", "64x64", "--clip-fps", "15",
        "--clip-seconds", "2", "--clip-stride-s", "1", "--skip-start-s", "3", "--skip-end-s", "4", "--fit", "pad",
        "--decoder", "pyav", "--decord-max-mb", "10", "--x264-preset", "medium", "--crf", "22", "--no-isolation",
        "--video-timeout-s", "60", "--quality-threshold", "0.3", "--quality-batch-size", "8", "--shard-size-mb",
        "1.5", "--table-part-rows", "10", "--workers", "3", "--delete-videos", "--runner", "X", "--project", "p"]


def _flag_actions() -> list[argparse.Action]:
    return [a for a in run.build_parser()._actions if a.option_strings and a.dest != "help"]


def test_the_flag_set_defaults_and_metavars_are_pinned():
    actions = _flag_actions()
    assert {a.option_strings[0]: a.default for a in actions} == FLAGS
    assert [a.option_strings[0] for a in actions] == list(FLAGS)
    assert {a.option_strings[0]: a.metavar for a in actions if a.metavar} == METAVARS
    assert [a.option_strings[0] for a in actions if a.required] == ["--output"]


def test_no_flags_resolve_to_the_config_defaults(tmp_path):
    config, launch, beam_args = run.parse(["--catalog", "x.jsonl", "--output", str(tmp_path)])
    assert beam_args == [] and launch == run.LaunchOptions(output=str(tmp_path))
    site = config.search.site
    assert config.download.site is site and site.processes >= 1
    assert dataclasses.replace(site, processes=1, run_id="") == SiteAccessConfig(run_id="")
    assert config.search == search.SearchConfig(catalogs=("x.jsonl",), site=site)
    assert config.download == download.DownloadConfig(download_dir=f"{tmp_path}/videos", site=site,
                                                      max_duration_s=14400)
    assert config.segment == cut.SegmentConfig(cache_dir=f"{tmp_path}/cache/segment")
    assert config.quality == quality.QualityConfig()
    assert config.shards.target_shard_bytes == 256 * 1024 * 1024 and config.table_part_rows == 20000


def test_every_flag_reaches_its_one_config(tmp_path):
    config, launch, beam_args = run.parse(FULL + ["--output", str(tmp_path)])
    assert beam_args == ["--runner", "X", "--project", "p"]
    assert (launch.workers, launch.delete_videos, launch.in_process) == (3, True, False)
    assert config.search == search.SearchConfig(
        catalogs=("a.jsonl", "b.csv"), youtube=True, youtube_per_query=5, youtube_date_sorted=True,
        youtube_max_queries=3, youtube_query_template="{game} x", youtube_sleep_s=2.0, min_duration_s=20.0,
        max_duration_s=600.0, site=config.search.site)
    site = config.download.site
    assert site is config.search.site and site.processes == 1  # --runner X: one worker of one vCPU
    assert dataclasses.replace(site, run_id="") == SiteAccessConfig(
        job_qps=2.0, site_qps=(("a.org", 3.0), ("b.org", 0.5)), unthrottled_hosts=("own.net",), default_site_qps=6.0,
        proxy="socks5://h:1", socket_timeout_s=12.0, max_backoff_s=9.0, run_id="",
        breaker=BreakerConfig(window=7, open_share=0.3, backoff_share=0.3, min_answers=3, max_backoff_s=9.0))
    assert config.download == download.DownloadConfig(
        download_dir="/tmp/v", retries=5, fragment_retries=7, rate_limit=2 * 1024**2, sleep_interval_s=0.5,
        site=site, max_filesize=500 * 1024**2, max_duration_s=600.0, min_height=480, js_runtime="node",
        retry_failed=True, remote_components=("ejs:npm",), isolate_probe=False)  # --no-isolation covers probes
    assert config.segment == cut.SegmentConfig(
        clip_width=64, clip_height=64, clip_fps=15, clip_frames=30, stride_frames=15, skip_start_s=3.0,
        skip_end_s=4.0, fit="pad", decoder="pyav", decord_max_mb=10.0, x264_preset="medium", crf=22, isolate=False,
        video_timeout_s=60.0, cache_dir=f"{tmp_path}/cache/segment", delete_sources_in="/tmp/v")
    assert config.quality == quality.QualityConfig(threshold=0.3, batch_size=8)
    assert config.shards.target_shard_bytes == int(1.5 * 1024 * 1024) and config.table_part_rows == 10


def test_each_flag_is_declared_once_on_one_config_field():
    declared = [flag.name for config_class, _ in run.OPTION_GROUPS for flag in options.flags(config_class)]
    assert sorted(declared) == sorted(FLAGS)  # every flag of the parser, each on exactly one field
    assert len(declared) == len(set(declared))


@pytest.mark.parametrize("module", [search, download, segment, cut, quality, site_access, breaker])
def test_stages_declare_no_flags_by_hand_and_read_no_namespace(module):
    source = Path(inspect.getfile(module)).read_text()
    for needle in ("add_argument(", "argparse.Namespace", "getattr(ns", "from_args"):
        assert needle not in source, f"{module.__name__} has {needle!r}: declare options with pipeline.cli.options"


def test_a_stage_builds_from_its_own_flags_only():
    parser = argparse.ArgumentParser()
    options.add_options(parser, cut.SegmentConfig, "segment")
    config = options.build(cut.SegmentConfig, parser.parse_args(["--clip-seconds", "2", "--clip-fps", "5"]))
    assert (config.clip_frames, config.clip_fps) == (10, 5)
    with pytest.raises(AttributeError):  # the download's flags are not the segment's to read
        options.build(download.DownloadConfig, parser.parse_args([]))


def test_a_switch_must_default_to_what_argparse_stores_without_it():
    with pytest.raises(ValueError, match="store_true"):
        options.option("--x", "a switch", action="store_true", default=True)
