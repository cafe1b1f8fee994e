"""Request budgets and breakers per site (pipeline.site.request_budget.SiteRules, pipeline.site.site_access).

Real parts throughout: yt-dlp's request stack against real HTTP servers on 127.0.0.1 (tests/fault_server.py),
two of them told apart by host name (``127.0.0.1`` and ``localhost``: budgets are per host, not per port),
object-store hosts reached through one of them acting as an HTTP proxy, and ``python -m pipeline run`` on
Beam's local runner. Budgets are checked by counting tokens on a fake clock, never by timing.
"""

from __future__ import annotations

import json

import pytest

from pipeline import run
from pipeline.audit import aggregates
from pipeline.download import DownloadConfig, Downloader
from pipeline.site.request_budget import DEFAULT_JOB_QPS, DEFAULT_SITE_QPS, YOUTUBE, Budget, SiteRules
from pipeline.site.site_access import SiteAccess, SiteAccessConfig
from schemas import CandidateVideo, DownloadedVideo, Outcome, reasons
from schemas.site_usage import SiteUsage
from schemas.stats import SiteCost
from tests import media
from tests.fault_server import Fault, FaultServer
from tests.pipeline.test_fleet_budget import FakeClock

needs_ffmpeg = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary")


def on_localhost(url: str) -> str:
    """The same server under another host name: another site."""
    return url.replace("//127.0.0.1:", "//localhost:", 1)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("media") / "v.mp4"
    media.write_video(path, fps=10, duration_s=1.0, width=64, height=36)
    return path.read_bytes()


def candidate(url: str, video_id: str) -> CandidateVideo:
    return CandidateVideo(video_id=video_id, source="test", url=url, title="Celeste speedrun")


# ---- which budget a URL draws from ------------------------------------------------------------------------
def test_youtube_hosts_share_one_budget_and_object_stores_and_files_have_none():
    rules = SiteRules()
    youtube = Budget(YOUTUBE, DEFAULT_JOB_QPS)
    for url in ("https://www.youtube.com/watch?v=x", "https://m.youtube.com/x", "https://youtu.be/x",
                "https://rr3---sn-4g5e6nzz.googlevideo.com/videoplayback?x=1", "https://i.ytimg.com/vi/x/0.jpg",
                "https://WWW.YouTube.com./watch?v=x"):
        assert rules.budget_for(url) == youtube, url
    for url in ("gs://bucket/videos/x.mp4", "s3://bucket/x.mp4", "file:///data/x.mp4", "/data/x.mp4", "x.mp4",
                "data:video/mp4;base64,AAAA"):
        assert rules.budget_for(url) is None, url  # no network request: no budget, no breaker, not counted
    for url, host in (("https://storage.googleapis.com/bucket/x.mp4", "storage.googleapis.com"),
                      ("https://bucket.storage.googleapis.com/x.mp4", "bucket.storage.googleapis.com"),
                      ("https://bucket.s3.us-east-1.amazonaws.com/x.mp4", "bucket.s3.us-east-1.amazonaws.com"),
                      ("https://s3.amazonaws.com/bucket/x.mp4", "s3.amazonaws.com"),
                      ("https://acct.blob.core.windows.net/c/x.mp4", "acct.blob.core.windows.net")):
        assert rules.budget_for(url) == Budget(host, None), url  # requests counted, no budget
    assert rules.budget_for("http://127.0.0.1:8000/x.mp4") == Budget("127.0.0.1", DEFAULT_SITE_QPS)
    assert rules.budget_for("https://videos.example.org/x.mp4") == Budget("videos.example.org", DEFAULT_SITE_QPS)
    assert rules.budget_for("https://notyoutube.com/x") == Budget("notyoutube.com", DEFAULT_SITE_QPS)


def test_named_hosts_cover_their_subdomains_and_the_longest_name_wins():
    rules = SiteRules(youtube_qps=2.0, default_qps=7.0, site_qps=(("example.com", 3.0), ("storage.googleapis.com", 50.0)),
                      unthrottled=("own.example.com",))
    assert rules.budget_for("https://cdn.example.com/x") == Budget("example.com", 3.0)
    assert rules.budget_for("https://example.com/x") == Budget("example.com", 3.0)
    assert rules.budget_for("https://a.own.example.com/x") == Budget("own.example.com", None)
    assert rules.budget_for("https://storage.googleapis.com/b/x") == Budget("storage.googleapis.com", 50.0)
    assert rules.budget_for("https://www.youtube.com/x") == Budget(YOUTUBE, 2.0)
    assert rules.budget_for("https://badexample.com/x") == Budget("badexample.com", 7.0)
    parent = SiteRules(unthrottled=("googleapis.com",))  # a parent domain does not free YouTube's API host
    assert parent.budget_for("https://youtubei.googleapis.com/youtubei/v1/player") == Budget(YOUTUBE, DEFAULT_JOB_QPS)
    assert parent.budget_for("https://storage.googleapis.com/b/x") == Budget("googleapis.com", None)
    with pytest.raises(ValueError, match="named more than once"):
        SiteRules(site_qps=(("a.org", 1.0),), unthrottled=("a.org",))


def test_the_flags_reach_the_rules_and_bad_ones_are_one_line_usage_errors(tmp_path, capsys):
    config, _, _ = run.parse(["--catalog", "c.jsonl", "--output", str(tmp_path), "--site-qps", "Videos.Example.org=2.5",
                              "--site-qps", "[::1]=9", "--unthrottled-host", "media.my-company.net",
                              "--default-site-qps", "30", "--youtube-qps", "1"])
    site = config.download.site
    assert site is config.search.site
    assert (site.site_qps, site.unthrottled_hosts, site.default_site_qps, site.job_qps) == (
        (("videos.example.org", 2.5), ("::1", 9.0)), ("media.my-company.net",), 30.0, 1.0)
    assert site.rules().budget_for("http://[::1]:8080/x") == Budget("::1", 9.0)
    for bad, says in ((["--site-qps", "example.org"], "expected HOST=N"),
                      (["--site-qps", "example.org=0"], "finite number > 0"),
                      (["--site-qps", "https://example.org/=3"], "not a URL"),
                      (["--site-qps", "youtu.be=3"], "its budget is --youtube-qps"),
                      (["--unthrottled-host", "example.org:8080"], "without a port"),
                      (["--unthrottled-host", "bad_host!"], "not a host name"),
                      (["--default-site-qps", "-1"], "--default-site-qps"),
                      (["--site-qps", "a.org=1", "--unthrottled-host", "a.org"], "named more than once")):
        with pytest.raises(SystemExit) as exited:
            run.parse(["--catalog", "c.jsonl", "--output", str(tmp_path), *bad])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and says in err and len(err.strip().splitlines()) == 1, (bad, err)


def test_help_shows_the_default_budget_for_unnamed_hosts():
    text = run.build_parser().format_help()
    assert "--default-site-qps N" in text and f"(default {DEFAULT_SITE_QPS:g})" in " ".join(text.split())
    assert "--site-qps HOST=N" in text and "--unthrottled-host HOST" in text


# ---- real requests through yt-dlp -------------------------------------------------------------------------
def test_files_and_object_stores_draw_no_tokens(video, tmp_path):
    """A file:// video creates no site at all; an object-store host (reached through the loopback server as
    an HTTP proxy) is counted but has no budget, while an unnamed host behind the same proxy draws tokens."""
    local = tmp_path / "local.mp4"
    local.write_bytes(video)
    clock = FakeClock()
    with FaultServer() as server:
        server.add("/bucket/v.mp4", video)
        server.add("/w/v.mp4", video)
        proxy = server.url("").rstrip("/")
        config = SiteAccessConfig(proxy=proxy, default_site_qps=1.0, socket_timeout_s=5.0)
        access = SiteAccess(config, clock=clock, sleep=clock.sleep)
        download = DownloadConfig(download_dir=str(tmp_path / "videos"), site=config, isolate_probe=False)
        with Downloader(download, access) as downloader:
            assert isinstance(downloader.download(candidate(local.as_uri(), "local")), DownloadedVideo)
            assert access.drain_usage() == [] and access.site_for(local.as_uri()) is None
            for i in range(3):
                assert isinstance(downloader.download(candidate(f"http://storage.googleapis.com/bucket/v.mp4?i={i}",
                                                                f"gcs{i}")), DownloadedVideo)
            assert isinstance(downloader.download(candidate("http://videos.example.org/w/v.mp4", "web")),
                              DownloadedVideo)
        hosts = [r.headers.get("Host") for r in server.log()]
    store, web = access.site_for("http://storage.googleapis.com/x"), access.site_for("http://videos.example.org/")
    assert store.bucket is None and store.breaker is None
    assert web.bucket.acquired == hosts.count("videos.example.org") == 2  # metadata + transfer
    usage = {u.site: u for u in access.drain_usage()}
    assert usage["storage.googleapis.com"] == SiteUsage(site="storage.googleapis.com", job_qps=None,
                                                        requests=hosts.count("storage.googleapis.com"))
    assert usage["videos.example.org"].requests == 2 and usage["videos.example.org"].job_qps == 1.0
    assert usage["videos.example.org"].waited_s == pytest.approx(1.0)  # the second token, on the fake clock
    assert not access.site_for("gs://bucket/x.mp4") and not access.site_for("/data/x.mp4")


def test_each_host_spends_its_own_budget(video, tmp_path):
    """Two hosts, each 1 request/s: spending one host's budget leaves the other's untouched (one budget for
    all, as before, would make the other host's first request wait too)."""
    clock = FakeClock()
    with FaultServer() as a, FaultServer() as b:
        url_a = a.add("/p", b"pong", content_type="text/plain")
        url_b = on_localhost(b.add("/p", b"pong", content_type="text/plain"))
        access = SiteAccess(SiteAccessConfig(site_qps=(("127.0.0.1", 1.0), ("localhost", 1.0))),
                            clock=clock, sleep=clock.sleep)
        with access.youtube_dl({"quiet": True}) as ydl:
            for _ in range(5):
                ydl.urlopen(url_a).read()
            spent = clock.now
            ydl.urlopen(url_b).read()
            assert clock.now == spent  # the other host's first request did not wait
            ydl.urlopen(url_b).read()
        sent_a, sent_b = len(a.log()), len(b.log())
    site_a, site_b = access.site_for(url_a), access.site_for(url_b)
    assert site_a is not site_b and (site_a.name, site_b.name) == ("127.0.0.1", "localhost")
    assert (site_a.bucket.acquired, site_b.bucket.acquired) == (sent_a, sent_b) == (5, 2)
    assert spent == pytest.approx(4.0)  # 1 saved token + 4 at 1/s
    usage = {u.site: (u.requests, round(u.waited_s, 6)) for u in access.drain_usage()}
    assert usage == {"127.0.0.1": (5, 4.0), "localhost": (2, 1.0)}


def test_a_breaker_opening_on_one_host_defers_only_that_hosts_videos(video, tmp_path):
    """Host A (127.0.0.1) answers every request with 429, host B (localhost) serves: A's breaker opens and
    defers A's remaining videos; every B video, interleaved with them in one process, is stored."""
    n = 20
    with FaultServer() as a, FaultServer() as b:
        for i in range(n):
            a.add(f"/a{i}.mp4", video)
            b.add(f"/b{i}.mp4", video)
        a.block(Fault.too_many_requests("0"))
        config = SiteAccessConfig(site_qps=(("127.0.0.1", 100.0), ("localhost", 100.0)), socket_timeout_s=5.0,
                                  backoff_base_s=0.01, max_backoff_s=0.05)
        access = SiteAccess(config)
        download = DownloadConfig(download_dir=str(tmp_path / "videos"), retries=0, site=config, isolate_probe=False)
        with Downloader(download, access) as downloader:
            results = {}
            for i in range(n):
                results[f"a{i}"] = downloader.download(candidate(a.url(f"/a{i}.mp4"), f"a{i}"))
                results[f"b{i}"] = downloader.download(candidate(on_localhost(b.url(f"/b{i}.mp4")), f"b{i}"))
        sent_a, sent_b = len(a.log()), len(b.log())
    a_reasons = [r.reason for k, r in results.items() if k.startswith("a")]
    assert all(isinstance(r, Outcome) for k, r in results.items() if k.startswith("a"))
    assert set(a_reasons) == {reasons.HTTP_429, reasons.DEFERRED} and a_reasons[-1] == reasons.DEFERRED
    assert all(isinstance(r, DownloadedVideo) for k, r in results.items() if k.startswith("b"))
    assert sent_b == 2 * n  # metadata + transfer for each B video: none held back
    assert sent_a < n  # A stopped being asked once its breaker opened
    site_a, site_b = access.site_for(a.url("/")), access.site_for(on_localhost(b.url("/")))
    assert site_a.open_reason.startswith("breaker open for 127.0.0.1: ") and site_b.open_reason is None
    detail = next(r.detail for r in results.values() if isinstance(r, Outcome) and r.reason == reasons.DEFERRED)
    assert "stopped contacting 127.0.0.1" in detail
    usage = {u.site: u for u in access.drain_usage()}
    assert usage["127.0.0.1"].requests == sent_a and usage["127.0.0.1"].deferred == a_reasons.count(reasons.DEFERRED)
    assert usage["localhost"].requests == sent_b and usage["localhost"].deferred == 0


# ---- the traffic record: stats.json and the console summary -----------------------------------------------
def test_site_usage_sums_per_site_and_lists_a_bounded_number():
    fn = aggregates.SiteUsageFn()
    parts = [fn.create_accumulator() for _ in range(2)]
    for i in range(aggregates.MAX_LISTED_SITES + 3):
        fn.add_input(parts[i % 2], SiteUsage(site=f"h{i:03d}.example", job_qps=10.0, requests=1000 - i, waited_s=0.5))
    fn.add_input(parts[0], SiteUsage(site=YOUTUBE, job_qps=4.0, requests=5000, waited_s=1.25, deferred=2))
    fn.add_input(parts[1], SiteUsage(site=YOUTUBE, job_qps=4.0, requests=5000, waited_s=1.25, paused_s=3.0))
    block = aggregates.sites_block(fn.extract_output(fn.merge_accumulators(parts)))
    assert len(block) == aggregates.MAX_LISTED_SITES + 1
    assert block[YOUTUBE] == SiteCost(job_qps=4.0, requests=10000, waited_s=2.5, paused_s=3.0, deferred=2)
    assert block[aggregates.OTHER_SITES] == SiteCost(job_qps=None, requests=sum(1000 - i for i in range(49, 53)),
                                                     waited_s=2.0, paused_s=0.0, deferred=0)
    lines = aggregates.sites_summary(block)
    assert lines[0] == "  site      youtube: 10000 request(s), 2.5 s waited (budget 4/s), 3.0 s paused (blocked), 2 deferred"
    assert lines[-1].endswith(f"{len(block) - aggregates.SUMMARY_SITES} more in stats.json (sites)")
    assert aggregates.sites_summary({}) == []


def test_site_usage_keeps_a_bounded_accumulator_with_exact_totals(monkeypatch):
    """A catalog with a host per video must not make the combiner hold a table per item."""
    monkeypatch.setattr(aggregates, "MAX_TRACKED_SITES", 10)
    fn = aggregates.SiteUsageFn()
    accs = [fn.create_accumulator() for _ in range(3)]
    for i in range(90):
        accs[i % 3] = fn.add_input(accs[i % 3], SiteUsage(site=f"h{i}.example", job_qps=10.0, requests=i + 1, waited_s=0.5))
    merged = fn.merge_accumulators(accs)
    assert all(len(acc) <= 11 for acc in accs) and len(merged) == 11
    assert sum(e.requests for e in merged.values()) == sum(range(1, 91))
    assert sum(e.waited_s for e in merged.values()) == pytest.approx(45.0)
    assert "h89.example" in merged and merged[aggregates.OTHER_SITES].job_qps is None


@needs_ffmpeg
def test_a_run_records_each_hosts_traffic_and_defers_only_the_blocked_host(tmp_path, capsys):
    """``python -m pipeline run`` (Beam's local runner, in process) over a catalog on two hosts, one blocking:
    the blocked host's videos are deferred, the other's kept, and stats.json and the summary say per host
    how many requests went out (as counted on the servers) and what each budget cost."""
    media.write_video(tmp_path / "clip.mp4", fps=10, duration_s=16.5, width=160, height=90)
    body = (tmp_path / "clip.mp4").read_bytes()
    n_a, n_b = 8, 3  # window 2: decisions from 1 answer, open after 3 paused blocked attempts
    with FaultServer() as a, FaultServer() as b:
        rows = [{"id": f"a{i}", "url": a.add(f"/a{i}.mp4", body), "title": "Celeste speedrun", "duration_s": 16.5}
                for i in range(n_a)]
        rows += [{"id": f"b{i}", "url": on_localhost(b.add(f"/b{i}.mp4", body)), "title": "Celeste speedrun",
                  "duration_s": 16.5} for i in range(n_b)]
        rows.append({"id": "local", "url": (tmp_path / "clip.mp4").as_uri(), "title": "Celeste speedrun",
                     "duration_s": 16.5})
        catalog = tmp_path / "catalog.jsonl"
        catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
        a.block(Fault.too_many_requests("0"))
        out = tmp_path / "out"
        code = run.main(["--catalog", str(catalog), "--output", str(out), "--in-process", "--retries", "0",
                         "--max-backoff-s", "0.05", "--breaker-window", "2", "--site-qps", "127.0.0.1=50",
                         "--unthrottled-host", "localhost"])
        sent_a, sent_b = len(a.log()), len(b.log())
    stats = json.loads((out / "stats.json").read_text())
    summary = capsys.readouterr().out
    assert stats["conservation"]["ok"] and code == 75  # deferred: a rerun would finish host A
    deferred = stats["deferred"]["videos"]
    assert 0 < deferred < n_a and stats["videos"]["kept"] == n_b + 1  # every B video and the local one
    sites = stats["sites"]
    assert set(sites) == {"127.0.0.1", "localhost"}  # the file:// video sent no request
    assert (sites["127.0.0.1"]["requests"], sites["127.0.0.1"]["job_qps"], sites["127.0.0.1"]["deferred"]) == (
        sent_a, 50.0, deferred)
    assert sites["localhost"] == {"job_qps": None, "requests": sent_b, "waited_s": 0.0, "paused_s": 0.0,
                                  "deferred": 0}
    assert sent_b == 2 * n_b
    assert f"  site      localhost: {sent_b} request(s), 0.0 s waited (no budget)" in summary
    assert f"  site      127.0.0.1: {sent_a} request(s), " in summary and "(budget 50/s)" in summary


@needs_ffmpeg
def test_over_http_a_rerun_rewrites_the_same_stats_but_its_traffic_record(tmp_path):
    """The ``sites`` block is this run's traffic: a rerun that reuses every download sends no request and
    records none; every other part of stats.json, and the report, are the same bytes."""
    media.write_video(tmp_path / "clip.mp4", fps=10, duration_s=16.5, width=160, height=90)
    body = (tmp_path / "clip.mp4").read_bytes()
    out = tmp_path / "out"
    with FaultServer() as server:
        rows = [{"id": f"w{i}", "url": server.add(f"/w{i}.mp4", body), "title": "Celeste speedrun", "duration_s": 16.5}
                for i in range(2)]
        catalog = tmp_path / "catalog.jsonl"
        catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
        argv = ["--catalog", str(catalog), "--output", str(out), "--in-process", "--quiet"]
        assert run.main(argv) == 0
        first = json.loads((out / "stats.json").read_text())
        page = (out / "report.html").read_bytes()
        assert run.main(argv) == 0
        second = json.loads((out / "stats.json").read_text())
        sent = len(server.log())
    assert first["sites"] == {"127.0.0.1": {"job_qps": DEFAULT_SITE_QPS, "requests": sent, "waited_s": first["sites"][
        "127.0.0.1"]["waited_s"], "paused_s": 0.0, "deferred": 0}} and sent == 4
    assert second["sites"] == {}
    assert {k: v for k, v in first.items() if k != "sites"} == {k: v for k, v in second.items() if k != "sites"}
    assert (out / "report.html").read_bytes() == page
