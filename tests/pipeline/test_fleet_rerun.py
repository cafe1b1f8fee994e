"""A blocked run defers what it did not finish, and a rerun into the same output finishes the job.

End to end through ``python -m pipeline run`` (pipeline.run.main, --in-process) with a catalog whose URLs point
at a loopback server (tests/fault_server.py). Run 1: the server blocks (429 storm); the requests sent are
counted on the server, the breaker opens, unfinished videos end ``deferred``; a local file:// video (not the
site) is kept. Run 2: blocking off; every video is kept, the file:// one reused, conservation holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import run
from pipeline.audit import exit_status
from schemas import Outcome, from_table, reasons
from schemas.stats import Stats
from tests import media
from tests.fault_server import Fault, FaultServer

pytestmark = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary")

VIDEOS = 8
WINDOW = 6  # --breaker-window: decisions after 3 answers, open after 3 more blocked ones


def read_outcomes(out: Path) -> dict[str, Outcome]:
    """Final outcomes whether the run wrote ``outcomes.parquet`` or a partitioned ``outcomes/`` directory."""
    return {o.item_id: o for o in from_table(pq.read_table(out / "outcomes"), Outcome)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    media.write_video(root / "clip.mp4", fps=10, duration_s=16.5, width=160, height=90)
    return root


def test_a_blocked_run_defers_and_a_rerun_keeps_everything(corpus, tmp_path):
    body = (corpus / "clip.mp4").read_bytes()
    out = tmp_path / "out"
    with FaultServer() as server:
        rows = [{"id": f"web{i}", "url": server.add(f"/web{i}.mp4", body), "title": "Celeste speedrun",
                 "duration_s": 20} for i in range(VIDEOS)]
        rows.append({"id": "local", "url": (corpus / "clip.mp4").as_uri(), "title": "Celeste speedrun",
                     "duration_s": 20})
        catalog = tmp_path / "catalog.jsonl"
        catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
        argv = ["--catalog", str(catalog), "--output", str(out), "--in-process", "--retries", "0",
                "--max-backoff-s", "0.1", "--breaker-window", str(WINDOW), "--site-qps", "127.0.0.1=20"]

        server.block(Fault.too_many_requests("1"))
        first_rc = run.main(argv)
        sent = len(server.log())
        stats = json.loads((out / "stats.json").read_text())
        page = (out / "report.html").read_text()
        first = read_outcomes(out)
        marker = out / "videos" / "local.json"
        local_mtime = marker.stat().st_mtime_ns

        server.block(None)
        second_rc = run.main(argv)
        second = read_outcomes(out)
        stats2 = json.loads((out / "stats.json").read_text())

    # run 1: the breaker opened after WINDOW/2 answers + 3 paused ones; nothing else was sent
    assert sent <= WINDOW // 2 + 3, sent
    web = {k: (o.stage, o.outcome, o.reason) for k, o in first.items() if o.item_kind == reasons.ITEM_VIDEO
           and k.startswith("web")}
    deferred = [k for k, v in web.items() if v == ("download", "failed", reasons.DEFERRED)]
    # one request per video (--retries 0); the video whose answer opened the breaker is deferred too
    assert len(web) == VIDEOS and len(deferred) == VIDEOS - sent + 1
    assert all(v == ("download", "failed", reasons.HTTP_429) for k, v in web.items() if k not in deferred)
    assert first["local"].outcome == reasons.KEPT  # a local file is not the site: no breaker for it
    assert stats["conservation"]["ok"]
    code, message = exit_status.exit_status(Stats.from_json(json.dumps(stats)))
    assert code == exit_status.DEFERRED and message.startswith(f"deferred: {len(deferred)} video(s)")
    assert first_rc == exit_status.DEFERRED
    assert stats["deferred"] == {"videos": len(deferred), "search_queries": 0}
    # the traffic record: every request the server counted, under its host's budget; the local file sent none
    assert stats["sites"] == {"127.0.0.1": {"job_qps": 20.0, "requests": sent, "waited_s": stats["sites"][
        "127.0.0.1"]["waited_s"], "paused_s": stats["sites"]["127.0.0.1"]["paused_s"], "deferred": len(deferred)}}
    assert f"DEFERRED: {len(deferred)} video(s) and 0 search query(ies)" in page

    # run 2: everything deferred or transiently failed is retried and kept; the finished video is reused
    assert {k: (o.stage, o.outcome) for k, o in second.items() if o.item_kind == reasons.ITEM_VIDEO} == {
        **{f"web{i}": ("segment", "kept") for i in range(VIDEOS)}, "local": ("segment", "kept")}
    assert stats2["clips"]["kept"] == VIDEOS + 1  # one 16 s clip from each video
    assert marker.stat().st_mtime_ns == local_mtime
    assert stats2["conservation"]["ok"]
    assert exit_status.exit_status(Stats.from_json(json.dumps(stats2))) == (exit_status.OK, None)
    assert second_rc == 0
