"""``python -m pipeline plan``: a catalog's worker-hours, peak storage and cost from its declared durations, by
the model of ``pipeline.tools.cost_model``; rows without a duration are counted and the assumption named."""

from __future__ import annotations

import re

import pytest

from pipeline.__main__ import main as pipeline_main
from pipeline.local import search_plan
from pipeline.tools import cost_model
from tests.cli_helpers import call_main


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_text('{"id": "a", "url": "https://e.com/a.mp4", "duration_s": 3600}\n'
                    '{"id": "b", "url": "https://e.com/b.mp4", "duration_s": 1800}\n'
                    '{"id": "c", "url": "https://e.com/c.mp4"}\n'
                    "not json\n")
    return str(path)


def test_the_model_per_video_hour():
    e = cost_model.estimate(1000.0, "n2-highcpu-8", 360)
    vcpu_hours = 1000 * cost_model.CPU_S_PER_VIDEO_HOUR[360] * cost_model.JOB_OVERHEAD / 3600 / cost_model.CPU_UTILISATION
    assert e.vcpu_hours == pytest.approx(vcpu_hours) and e.worker_hours == pytest.approx(vcpu_hours / 8)
    assert e.disk_gb == 100 and e.memory_gb == 8
    assert e.clip_gb == pytest.approx(1000 * 225 * cost_model.CLIP_BYTES / 1e9)
    assert e.peak_storage_gb == pytest.approx(1000 * cost_model.SOURCE_GB_PER_VIDEO_HOUR[360] + 2 * e.clip_gb)
    assert e.total_usd == pytest.approx(vcpu_hours * cost_model.VCPU_HOUR_USD + e.memory_usd + e.disk_usd
                                        + e.storage_usd)
    assert cost_model.estimate(1000.0, "n2-highcpu-8", 720).vcpu_hours > e.vcpu_hours
    assert cost_model.estimate(1000.0, delete_videos=True).source_gb == 0


def test_plan_prints_hours_storage_and_cost_and_names_what_it_assumed(catalog, capsys):
    code, out, err = call_main(pipeline_main, ["plan", "--catalog", catalog], capsys)
    assert code == 0 and err == ""
    hours = 1.5 + search_plan.UNKNOWN_DURATION_S / 3600
    assert out.startswith(f"catalog: 4 row(s), 2 with a declared duration (1.5 video-hours), 1 without one "
                          f"(assumed {search_plan.UNKNOWN_DURATION_S:g} s each")
    assert "1 unreadable (not counted)" in out and f"{hours:.1f} video-hours in all" in out
    e = cost_model.estimate(hours)
    assert f"{e.worker_hours:,.2f} worker-hours" in out and f"peak {e.peak_storage_gb:,.2f} GB" in out
    assert f"= {e.total_usd:,.2f}; per 1,000 video-hours {cost_model.estimate(1000.0).total_usd:,.2f}" in out
    assert cost_model.RECORD in out and cost_model.PRICES_DATE in out


def test_prices_machine_and_assumptions_are_flags(catalog, capsys):
    args = ["plan", "--catalog", catalog, "--machine-type", "n2-standard-4", "--source-height", "720",
            "--assume-duration-s", "7200", "--vcpu-hour-usd", "1", "--memory-gb-hour-usd", "0.5",
            "--pd-gb-month-usd", "1", "--gcs-gb-month-usd", "1", "--delete-videos", "--disk-size-gb", "30"]
    code, out, _ = call_main(pipeline_main, args, capsys)
    assert code == 0
    e = cost_model.estimate(3.5, "n2-standard-4", 720, disk_gb=30, delete_videos=True,
                            prices=cost_model.Prices(1, 0.5, 1, 1))
    assert "(assumed 7200 s each" in out and "n2-standard-4 (4 vCPU, 16 GB, 30 GB disk)" in out
    assert f"vCPU {e.vcpu_usd:,.2f} + memory {e.memory_usd:,.2f}" in out and "no sources: --delete-videos" in out


@pytest.mark.parametrize("args, message", [
    (["--machine-type", "n9-huge-8"], "argument --machine-type: invalid choice: 'n9-huge-8'"),
    (["--vcpu-hour-usd", "0"], "argument --vcpu-hour-usd: must be > 0, got 0"),
    (["--machine-typ", "n2-standard-4"], "unknown flag --machine-typ"),
])
def test_bad_flags_are_one_line_errors(catalog, capsys, args, message):
    code, out, err = call_main(pipeline_main, ["plan", "--catalog", catalog, *args], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_an_unreadable_catalog_is_refused(tmp_path, capsys):
    code, _, err = call_main(pipeline_main, ["plan", "--catalog", str(tmp_path / "none.jsonl")], capsys)
    assert code == 2 and re.match(r"error: --catalog \S+none.jsonl: cannot be read: \S+ does not exist \(see python -m pipeline plan", err)
