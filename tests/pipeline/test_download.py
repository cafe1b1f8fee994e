"""The Download stage against a real HTTP server on 127.0.0.1 that injects faults (tests/fault_server.py).

Every case goes through real yt-dlp (extraction, format choice, HttpFD/HLS downloaders), real files and
real FFmpeg probing; stored files are checked against the served bytes (sha256) and against ``ffprobe``.
The server logs every request, so retries, resumption and waits are checked on the wire, not inferred.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import apache_beam as beam
import av
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from yt_dlp.networking.exceptions import HTTPError
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError, UnsupportedError

from pipeline import download
from pipeline.download import Download, DownloadConfig, Downloader, backoff_s, choose_format, download_one
from pipeline.search import Search, SearchConfig
from pipeline.site.errors import classify, parse_retry_after
from pipeline.site.site_access import SiteAccessConfig
from pipeline.stage import MAIN, OUTCOMES
from pipeline.video.probe import ProbeError, probe_file
from schemas import CandidateVideo, DownloadedVideo, Outcome, ids, reasons
from tests.fault_server import Fault, FaultServer
from tests.object_store import FakeObjectStore

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg binary (HLS, audio fixtures)")


def encode_mp4(path: Path, width: int = 320, height: int = 180, seconds: int = 3, fps: int = 10) -> bytes:
    """A small real H.264 mp4 (PyAV/libx264) with moving content."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            frame = np.full((height, width, 3), (i * 8) % 256, np.uint8)
            frame[:, (i * 5) % width] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def ffprobe(path: str) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,width,height,avg_frame_rate", "-of", "json", path],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["streams"][0]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    files = {"video": root / "video.mp4", "big": root / "big.mp4"}
    encode_mp4(files["video"])
    encode_mp4(files["big"], seconds=12)
    if FFMPEG:
        hls = root / "hls"
        hls.mkdir()
        subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=10",
                        "-t", "4", "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p", "-f", "hls",
                        "-hls_time", "1", "-hls_playlist_type", "vod", str(hls / "index.m3u8")], check=True)
        files["hls"] = hls
        files["audio"] = root / "audio.m4a"
        subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac",
                        str(files["audio"])], check=True)
    return files


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


def config(tmp_path: Path, **overrides) -> DownloadConfig:
    """A download config; the network overrides (timeout, back-off) go into its site-access config."""
    network = dict(socket_timeout_s=1.0, backoff_base_s=0.05, max_backoff_s=5.0)
    network.update({k: overrides.pop(k) for k in list(overrides) if k in network})
    settings = dict(download_dir=str(tmp_path / "videos"), retries=2, max_filesize=200_000)
    settings.update(overrides)
    return DownloadConfig(site=SiteAccessConfig(**network), **settings)


def candidate(url: str, video_id: str = "vid") -> CandidateVideo:
    return CandidateVideo(video_id=video_id, source="test", url=url, title="Mario speedrun", duration_s=3.0)


def assert_stored(result, body: bytes, root: Path) -> DownloadedVideo:
    assert isinstance(result, DownloadedVideo), result
    assert result.sha256 == hashlib.sha256(body).hexdigest() and result.size_bytes == len(body)
    assert Path(result.path).read_bytes() == body
    assert Path(result.path).parent == root / "videos"
    return result


# ---- the fault cases ---------------------------------------------------------------------------------------
def test_plain_download_is_stored_hashed_and_probed(server, media, tmp_path):
    body = media["video"].read_bytes()
    result = assert_stored(download_one(candidate(server.add("/v.mp4", body)), config(tmp_path)), body, tmp_path)
    reference = ffprobe(result.path)  # independent probe of the same file
    assert (result.codec, result.width, result.height) == (reference["codec_name"], reference["width"],
                                                           reference["height"]) == ("h264", 320, 180)
    assert result.fps == pytest.approx(eval(reference["avg_frame_rate"]))  # noqa: S307 - "10/1" from ffprobe
    assert result.duration_s == pytest.approx(3.0, abs=0.15) and result.rotation == 0
    assert result.path == ids.storage_path(str(tmp_path / "videos"), "vid", "mp4")
    assert not (tmp_path / "videos" / ".partial").exists()  # staging cleaned up


def test_connection_dropped_mid_transfer_is_resumed(server, media, tmp_path):
    body = media["video"].read_bytes()
    # request 1 is yt-dlp's probe of the URL, request 2 the transfer that gets cut
    url = server.add("/drop.mp4", body, script=[Fault.ok(), Fault.drop(0.5)])
    assert_stored(download_one(candidate(url), config(tmp_path)), body, tmp_path)
    log = server.log("/drop.mp4")
    assert [r.fault for r in log] == ["ok", "drop", "ok"]
    assert log[2].headers.get("Range", "").startswith("bytes=") and log[2].headers["Range"] != "bytes=0-"


def test_server_errors_are_retried_with_backoff(server, media, tmp_path):
    body = media["video"].read_bytes()
    url = server.add("/flaky.mp4", body, script=[Fault.status_code(500), Fault.status_code(503)])
    assert_stored(download_one(candidate(url), config(tmp_path, backoff_base_s=0.2)), body, tmp_path)
    log = server.log("/flaky.mp4")
    assert [r.fault for r in log][:3] == ["status:500", "status:503", "ok"]
    assert log[1].time - log[0].time >= 0.2 * 0.9 and log[2].time - log[1].time >= 0.4 * 0.9  # 0.2 s, then 0.4 s


def test_429_waits_as_long_as_retry_after_says(server, media, tmp_path):
    body = media["video"].read_bytes()
    url = server.add("/busy.mp4", body, script=[Fault.too_many_requests("1")])
    # the back-off base is tiny, so only honouring Retry-After explains a pause of about a second
    assert_stored(download_one(candidate(url), config(tmp_path, backoff_base_s=0.01)), body, tmp_path)
    log = server.log("/busy.mp4")
    assert log[0].fault == "status:429" and log[1].fault == "ok"
    assert log[1].time - log[0].time >= 0.95


def test_persistent_429_fails_after_the_retries(server, media, tmp_path):
    url = server.add("/always429.mp4", b"", then=Fault.too_many_requests("0"))
    result = download_one(candidate(url), config(tmp_path, retries=2))
    assert isinstance(result, Outcome) and (result.outcome, result.reason) == (reasons.FAILED, reasons.HTTP_429)
    assert "429" in result.detail and "3 attempts" in result.detail
    assert len(server.log("/always429.mp4")) == 3


def test_retry_after_beyond_the_maximum_backoff_fails_at_once(server, tmp_path):
    url = server.add("/later.mp4", b"", then=Fault.too_many_requests("3600"))
    result = download_one(candidate(url), config(tmp_path, max_backoff_s=5))
    assert result.reason == reasons.HTTP_429 and "3600" in result.detail
    assert len(server.log("/later.mp4")) == 1


@pytest.mark.parametrize(("fault", "reason"), [
    (Fault.status_code(403), reasons.HTTP_403),
    (Fault.status_code(404), reasons.HTTP_404),
    (Fault.status_code(410), reasons.HTTP_ERROR),
    (Fault.redirect_loop(), reasons.REDIRECT_LOOP),
])
def test_permanent_http_failures_are_not_retried(server, tmp_path, fault, reason):
    url = server.add("/refused.mp4", b"x", then=fault)
    result = download_one(candidate(url), config(tmp_path))
    assert isinstance(result, Outcome) and (result.stage, result.outcome, result.reason) == (
        reasons.STAGE_DOWNLOAD, reasons.FAILED, reason)
    assert result.detail and result.video_id == "vid" and result.duration_s == 3.0
    if fault.kind != "redirect_loop":
        assert len(server.log("/refused.mp4")) == 1
    assert not (tmp_path / "videos" / "vid.json").exists()


def test_stalled_transfer_times_out(server, tmp_path):
    url = server.add("/stall.mp4", b"x", then=Fault.stall(30))
    result = download_one(candidate(url), config(tmp_path, retries=1, socket_timeout_s=1.0))
    assert (result.outcome, result.reason) == (reasons.FAILED, reasons.TIMEOUT)
    assert "timed out" in result.detail and len(server.log("/stall.mp4")) == 2  # one retry


def test_transfer_that_stalls_mid_body_times_out(server, media, tmp_path):
    """Headers and half the body arrive, then nothing: the read timeout (not a connect timeout) must fire."""
    body = media["video"].read_bytes()
    # request 1 is yt-dlp's probe of the URL; every transfer after it stalls halfway
    url = server.add("/slow.mp4", body, script=[Fault.ok()], then=Fault.stall_body(0.5, seconds=30))
    result = download_one(candidate(url), config(tmp_path, retries=1, socket_timeout_s=0.3))
    assert isinstance(result, Outcome) and (result.outcome, result.reason) == (reasons.FAILED, reasons.TIMEOUT)
    assert "timed out" in result.detail
    stalled = [r for r in server.log("/slow.mp4") if r.fault == "stall_body"]
    # yt-dlp resumed after the bytes it had (Range past 0), so the transfer had really started
    assert any(r.headers.get("Range", "bytes=0-") != "bytes=0-" for r in stalled), stalled
    assert not list((tmp_path / "videos").glob("vid.*"))


def test_empty_body_over_http_is_an_empty_file(server, tmp_path):
    url = server.add("/empty.mp4", b"")
    result = download_one(candidate(url), config(tmp_path))
    assert isinstance(result, Outcome) and (result.stage, result.outcome, result.reason) == (
        reasons.STAGE_DOWNLOAD, reasons.FAILED, reasons.EMPTY_FILE)
    assert "0 bytes" in result.detail
    assert len(server.log("/empty.mp4")) == 2  # the probe and one transfer: an empty file is not retried
    assert not (tmp_path / "videos" / "vid.json").exists()


def test_empty_file_over_file_url_is_an_empty_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result = download_one(candidate(empty.as_uri()), config(tmp_path))
    assert isinstance(result, Outcome) and (result.outcome, result.reason) == (reasons.FAILED, reasons.EMPTY_FILE)


def test_transfer_cut_before_its_first_byte_is_a_connection_error(server, media, tmp_path):
    """Content-Length announced, connection closed at once, every time: transient, retried, then connection_error
    (it must not be mistaken for an empty file, which announces 0 bytes)."""
    body = media["video"].read_bytes()
    url = server.add("/cut.mp4", body, script=[Fault.ok()], then=Fault.drop(0.0))
    result = download_one(candidate(url), config(tmp_path, retries=1))
    assert (result.outcome, result.reason) == (reasons.FAILED, reasons.CONNECTION_ERROR)
    assert "more expected" in result.detail and "2 attempts" in result.detail


@pytest.mark.parametrize(("path", "fault", "reason"), [
    ("/x/timeout-signin.html", Fault.ok(), reasons.UNSUPPORTED_URL),  # not "timeout", not "login_required"
    ("/x/private%20video.mp4", Fault.status_code(404), reasons.HTTP_404),  # not "private"
    ("/x/sign%20in%20to%20confirm%20you%27re%20not%20a%20bot.mp4", Fault.status_code(403), reasons.HTTP_403),
])
def test_words_in_the_url_do_not_decide_the_reason(server, tmp_path, path, fault, reason):
    url = server.add(path, b"<html><body>no video</body></html>", content_type="text/html", then=fault)
    result = download_one(candidate(url), config(tmp_path))
    assert (result.outcome, result.reason) == (reasons.FAILED, reason), result.detail
    assert server.log(path)[0].fault == (fault.kind if fault.kind == "ok" else f"status:{fault.status}")


def test_file_over_the_size_limit_is_refused(server, media, tmp_path):
    body = media["big"].read_bytes()
    url = server.add("/big.mp4", body)
    result = download_one(candidate(url), config(tmp_path, max_filesize=len(body) - 1))
    assert (result.outcome, result.reason) == (reasons.FAILED, reasons.TOO_LARGE)
    assert str(len(body)) in result.detail
    assert not list((tmp_path / "videos").glob("vid.*"))


def test_metadata_limits_reject_before_downloading(server, media, tmp_path):
    """A page whose schema.org metadata declares a 2 h, 900 kB video: refused from the metadata alone."""
    video_url = server.add("/long.mp4", media["video"].read_bytes())
    page = ('<html><head><title>x</title><script type="application/ld+json">{"@context": "https://schema.org", '
            f'"@type": "VideoObject", "name": "Long run", "contentUrl": "{video_url}", "duration": "PT2H", '
            '"contentSize": "900000", "uploadDate": "2024-01-01"}</script></head><body></body></html>')
    url = server.add("/watch", page.encode(), content_type="text/html")
    long_ = download_one(candidate(url, "long"), config(tmp_path, max_duration_s=3600, max_filesize=None))
    assert (long_.outcome, long_.reason, long_.duration_s) == (reasons.DROPPED, reasons.TOO_LONG, 3.0)
    large = download_one(candidate(url, "large"), config(tmp_path, max_filesize=1000))
    assert (large.outcome, large.reason) == (reasons.FAILED, reasons.TOO_LARGE) and "metadata" in large.detail
    # yt-dlp probes the video URL once per extraction; a download would have needed a second request each
    assert len(server.log("/long.mp4")) == 2 and not list((tmp_path / "videos").glob("*.mp4"))


@pytest.mark.parametrize(("info", "outcome", "reason"), [
    ({"id": "x", "live_status": "is_live"}, reasons.DROPPED, reasons.TOO_LONG),
    ({"id": "x", "live_status": "is_upcoming"}, reasons.FAILED, reasons.UNAVAILABLE),
    ({"_type": "playlist", "id": "x", "entries": []}, reasons.FAILED, reasons.UNSUPPORTED_URL),
    ({"id": "x", "duration": 7200, "filesize": 10}, reasons.DROPPED, reasons.TOO_LONG),
    ({"id": "x", "duration": 60, "filesize_approx": 10**9}, reasons.FAILED, reasons.TOO_LARGE),
])
def test_metadata_checks(tmp_path, info, outcome, reason):
    """yt-dlp metadata shapes the local server cannot produce (YouTube live streams, playlists)."""
    with Downloader(config(tmp_path, max_duration_s=3600, max_filesize=10**6)) as downloader:
        with pytest.raises(Exception) as caught:
            downloader._check_metadata(info)
        assert (caught.value.outcome, caught.value.reason) == (outcome, reason)
        downloader._check_metadata({"id": "x", "duration": 60, "filesize": 10})  # within limits: no complaint


@needs_ffmpeg
def test_hls_playlist_downloads_every_segment(server, media, tmp_path):
    segments = sorted(media["hls"].glob("*.ts"))
    for path in segments:
        server.add(f"/hls/{path.name}", path.read_bytes(), content_type="video/mp2t")
    url = server.add("/hls/index.m3u8", (media["hls"] / "index.m3u8").read_bytes(),
                     content_type="application/vnd.apple.mpegurl")
    result = download_one(candidate(url), config(tmp_path))
    assert isinstance(result, DownloadedVideo), result
    assert all(len(server.log(f"/hls/{p.name}")) == 1 for p in segments) and len(segments) >= 4
    reference = ffprobe(result.path)
    assert (result.codec, result.width, result.height) == (reference["codec_name"], 320, 180)
    assert result.duration_s == pytest.approx(4.0, abs=0.3)


@needs_ffmpeg
def test_audio_only_file_has_no_video_stream(server, media, tmp_path):
    url = server.add("/song.m4a", media["audio"].read_bytes(), content_type="audio/mp4")
    result = download_one(candidate(url), config(tmp_path))
    assert (result.outcome, result.reason) == (reasons.FAILED, reasons.NO_VIDEO_STREAM)


def test_html_page_without_video_is_an_unsupported_url(server, tmp_path):
    url = server.add("/page.html", b"<html><body>no video here</body></html>", content_type="text/html")
    assert download_one(candidate(url), config(tmp_path)).reason == reasons.UNSUPPORTED_URL


# ---- idempotence -------------------------------------------------------------------------------------------
def test_rerun_reuses_complete_downloads_and_redoes_partial_ones(server, media, tmp_path):
    body = media["video"].read_bytes()
    url = server.add("/v.mp4", body)
    cfg = config(tmp_path)
    first = assert_stored(download_one(candidate(url), cfg), body, tmp_path)
    requests = len(server.log("/v.mp4"))
    again = download_one(candidate(url).replace(title="Mario speedrun (renamed)"), cfg)
    assert len(server.log("/v.mp4")) == requests  # nothing fetched
    assert again.replace(candidate=first.candidate) == first and again.candidate.title.endswith("(renamed)")

    # a truncated file in place of the stored one is not taken for complete: it is fetched again
    Path(first.path).write_bytes(body[: len(body) // 2])
    assert_stored(download_one(candidate(url), cfg), body, tmp_path)
    assert len(server.log("/v.mp4")) > requests

    # without its completion marker a stored file does not count either
    requests = len(server.log("/v.mp4"))
    Path(ids.storage_path(cfg.download_dir, "vid", "json")).unlink()
    assert_stored(download_one(candidate(url), cfg), body, tmp_path)
    assert len(server.log("/v.mp4")) > requests


def test_hostile_ids_are_stored_inside_the_download_dir(server, media, tmp_path):
    body = media["video"].read_bytes()
    url = server.add("/v.mp4", body)
    result = download_one(candidate(url, "../../escape/..\u0000.mp4"), config(tmp_path))
    assert_stored(result, body, tmp_path)
    assert result.video_id == "../../escape/..\u0000.mp4"


# ---- Beam ----------------------------------------------------------------------------------------------------
def test_beam_search_and_download_from_a_file_catalog(server, media, tmp_path):
    """Catalog with relative paths -> Search -> Download on the real runner: file:// URLs, http faults,
    outcomes on the dead-letter output and one metrics counter per reason."""
    corpus = tmp_path / "corpus"
    (corpus / "videos").mkdir(parents=True)
    shutil.copy(media["video"], corpus / "videos" / "good.mp4")
    rows = [
        {"id": "good", "url": "videos/good.mp4", "title": "CoinRun speedrun", "duration_s": 30},
        {"id": "gone", "url": "videos/missing.mp4", "title": "CoinRun speedrun", "duration_s": 30},
        {"id": "forbidden", "url": server.add("/f.mp4", b"x", then=Fault.status_code(403)),
         "title": "Ninja gameplay", "duration_s": 30},
        {"id": "web", "url": server.add("/w.mp4", media["video"].read_bytes()), "title": "Jumper gameplay",
         "duration_s": 30},
    ]
    (corpus / "catalog.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    cfg = config(tmp_path, download_dir=str(out / "videos"))
    pipeline = beam.Pipeline(runner=FnApiRunner())
    found = pipeline | Search(SearchConfig(catalogs=(str(corpus / "catalog.jsonl"),)))
    got = found[MAIN] | Download(cfg)
    (got[MAIN] | "StoredJson" >> beam.Map(lambda d: d.to_json())
     | "WriteStored" >> beam.io.WriteToText(str(out / "stored"), shard_name_template=""))
    (got[OUTCOMES] | "OutJson" >> beam.Map(lambda o: o.to_json())
     | "WriteOutcomes" >> beam.io.WriteToText(str(out / "outcomes"), shard_name_template=""))
    result = pipeline.run()
    result.wait_until_finish()

    stored = {d.video_id: d for d in map(DownloadedVideo.from_json, (out / "stored").read_text().splitlines())}
    outcomes = {o.video_id: o for o in map(Outcome.from_json, (out / "outcomes").read_text().splitlines())}
    assert set(stored) == {"good", "web"}
    assert stored["good"].sha256 == hashlib.sha256((corpus / "videos" / "good.mp4").read_bytes()).hexdigest()
    assert stored["good"].candidate.url == (corpus / "videos" / "good.mp4").resolve().as_uri()
    assert {k: o.reason for k, o in outcomes.items()} == {"gone": reasons.UNAVAILABLE,
                                                          "forbidden": reasons.HTTP_403}
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(reasons.STAGE_DOWNLOAD))["counters"]}
    assert counters["failed/http_403"] == 1 and counters["failed/unavailable"] == 1 and counters["stored"] == 2


# ---- pure parts: format choice, error mapping, back-off -------------------------------------------------------
def fmt(format_id, height, vcodec, acodec="none", protocol="https", tbr=100.0, **extra):
    return {"format_id": format_id, "height": height, "vcodec": vcodec, "acodec": acodec, "protocol": protocol,
            "tbr": tbr, "ext": "mp4", **extra}


YOUTUBE_LIKE = [
    fmt("sb0", None, "none", ext="mhtml", format_note="storyboard"),
    fmt("140", None, "none", acodec="mp4a.40.2"),
    fmt("160", 144, "avc1.4d400c", tbr=80), fmt("394", 144, "av01.0.00M.08", tbr=60),
    fmt("133", 240, "avc1.4d4015", tbr=150), fmt("242", 240, "vp9", tbr=120),
    fmt("18", 360, "avc1.42001E", acodec="mp4a.40.2", tbr=500),
    fmt("134", 360, "avc1.4d401e", tbr=300), fmt("243", 360, "vp9", tbr=250), fmt("396", 360, "av01.0.01M.08", tbr=200),
    fmt("230", 360, "avc1.4D401E", protocol="m3u8_native", tbr=300),
    fmt("136", 720, "avc1.4d401f", tbr=1200),
]


@pytest.mark.parametrize(("formats", "expected"), [
    (YOUTUBE_LIKE, "134"),  # smallest >= 360p, H.264, video-only, plain HTTP
    ([f for f in YOUTUBE_LIKE if not f["vcodec"].startswith("avc")], "243"),  # no H.264: VP9 before AV1
    ([f for f in YOUTUBE_LIKE if (f["height"] or 0) < 360], "133"),  # none tall enough: best below, H.264
    ([fmt("396", 360, "av01.0.01M.08"), fmt("394", 144, "av01.0.00M.08")], "396"),  # AV1 only as a last resort
    ([{"format_id": "mp4", "url": "http://x/v.mp4", "ext": "mp4", "protocol": "http"}], "mp4"),  # direct link
    ([fmt("140", None, "none", acodec="mp4a.40.2")], None),  # audio only
])
def test_choose_format(formats, expected):
    chosen = choose_format(formats, min_height=360)
    assert (chosen or {}).get("format_id") == expected


def _yt_error(message: str, cls=ExtractorError) -> DownloadError:
    """A DownloadError as YoutubeDL raises it around an extractor's error (messages as yt-dlp words them)."""
    inner = cls(message, expected=True) if cls is not GeoRestrictedError else cls(message)
    return DownloadError(f"ERROR: [youtube] abc: {inner}", exc_info=(type(inner), inner, None))


@pytest.mark.parametrize(("message", "reason"), [
    ("Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies for the authentication.",
     reasons.BOT_CHECK),
    ("Sign in to confirm your age. This video may be inappropriate for some users.", reasons.AGE_RESTRICTED),
    ("Private video. Sign in if you've been granted access to this video", reasons.PRIVATE),
    ("Join this channel to get access to members-only content like this video, and other exclusive perks.",
     reasons.LOGIN_REQUIRED),
    ("This video is only available for registered users. Use --cookies", reasons.LOGIN_REQUIRED),
    ("Video unavailable. This video has been removed by the uploader", reasons.UNAVAILABLE),
    ("Unsupported URL: https://example.com/", reasons.UNSUPPORTED_URL),
    ("Requested format is not available. Use --list-formats for a list of available formats",
     reasons.NO_VIDEO_STREAM),
    ("Unable to extract initial player response; please report this issue", reasons.EXTRACTOR_ERROR),
])
def test_youtube_refusals_map_to_reasons(message, reason):
    failure = classify(_yt_error(message))
    assert failure.reason == reason and not failure.transient
    assert failure.detail.startswith("[youtube] abc:")


def test_exception_types_outrank_message_text():
    url = "http://cdn.example/x/timeout-signin.mp4"
    unsupported = UnsupportedError(url)
    wrapped = DownloadError(f"ERROR: {unsupported}", exc_info=(UnsupportedError, unsupported, None))
    assert classify(wrapped).reason == reasons.UNSUPPORTED_URL and not classify(wrapped).transient
    assert classify(DownloadError(f"ERROR: Unsupported URL: {url}")).reason == reasons.UNSUPPORTED_URL  # text only
    timeout = TimeoutError("timed out")
    assert classify(DownloadError("ERROR: [generic] unsupported-url: Unable to download webpage",
                                  exc_info=(TimeoutError, timeout, None))).reason == reasons.TIMEOUT
    # the [extractor] <id>: prefix is the URL's last segment, not yt-dlp's words
    assert classify(DownloadError("ERROR: [generic] private video: Unable to download webpage")).reason \
        == reasons.DOWNLOAD_ERROR
    assert classify(DownloadError("ERROR: Did not get any data blocks")).reason == reasons.EMPTY_FILE


def test_geo_block_and_http_errors_from_the_exception_chain():
    assert classify(_yt_error("The uploader has not made this video available in your country.",
                              GeoRestrictedError)).reason == reasons.GEO_BLOCKED
    with FaultServer() as s:  # a real HTTPError with real headers, from yt-dlp's own request stack
        url = s.add("/x", b"", then=Fault.status_code(503, Retry_After="7"))
        from yt_dlp import YoutubeDL
        with YoutubeDL({"quiet": True}) as ydl, pytest.raises(HTTPError) as caught:
            ydl.urlopen(url)
    failure = classify(caught.value)
    assert (failure.reason, failure.retry_after_s, failure.transient) == (reasons.HTTP_5XX, 7.0, True)


def test_retry_after_and_backoff_arithmetic():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == pytest.approx(60.0)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert [backoff_s(n, 1.0, 10.0) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff_s(0, 1.0, 10.0, retry_after_s=3.0) == 3.0
    assert backoff_s(0, 1.0, 10.0, retry_after_s=30.0) is None


def test_download_needs_a_directory():
    with pytest.raises(ValueError, match="download_dir"):
        Downloader(DownloadConfig())
    with pytest.raises(ValueError, match="download_dir"):
        Download(DownloadConfig())


# ---- probe ------------------------------------------------------------------------------------------------------
@needs_ffmpeg
def test_probe_reads_rotation_like_ffprobe(media, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(media["video"]), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream_side_data=rotation", "-of", "json", str(rotated)],
                         capture_output=True, text=True, check=True).stdout
    expected = int(json.loads(out)["streams"][0]["side_data_list"][0]["rotation"]) % 360
    assert expected != 0 and probe_file(str(rotated)).rotation == expected
    assert probe_file(str(media["video"])).rotation == 0


def _probe_that_segfaults(path):
    """Stands in for a decoder that dies on a hostile file (module level: the child imports it by name)."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def test_probe_runs_in_a_child_so_a_decoder_crash_spares_the_worker(server, media, tmp_path, monkeypatch):
    body = media["video"].read_bytes()
    url = server.add("/v.mp4", body)
    monkeypatch.setattr(download, "probe_file", _probe_that_segfaults)
    with Downloader(config(tmp_path)) as downloader:
        crashed = downloader.download(candidate(url, "crash"))  # this process is still alive to see the result
        assert isinstance(crashed, DownloadedVideo) and crashed.codec == "" and crashed.fps is None
        assert Path(crashed.path).read_bytes() == body  # stored: the segment stage diagnoses it (in its child)
        monkeypatch.setattr(download, "probe_file", probe_file)
        again = downloader.download(candidate(url, "after"))  # a fresh child takes over
        assert again.codec == "h264" and again.width == 320


@pytest.mark.parametrize(("content", "reason"), [
    (b"", reasons.EMPTY_FILE),
    (b"<html>not a video</html>" * 10, reasons.CORRUPT_VIDEO),
    ("audio", reasons.NO_VIDEO_STREAM),
])
def test_probe_refuses_non_videos(media, tmp_path, content, reason):
    if content == "audio":
        if "audio" not in media:
            pytest.skip("needs ffmpeg for the audio fixture")
        content = media["audio"].read_bytes()
    path = tmp_path / "file.mp4"
    path.write_bytes(content)
    with pytest.raises(ProbeError) as caught:
        probe_file(str(path))
    assert caught.value.reason == reason and caught.value.detail


# ---- remote storage ---------------------------------------------------------------------------------------------
class _MemoryFileSystem(FakeObjectStore):
    """The fake object store (tests/object_store.py) under its own scheme, standing in for gs:// (no cloud
    from the tests). Beam finds it by its scheme, so ``pipeline.io.storage`` takes the code path it takes for GCS."""

    objects: dict[str, bytes] = {}
    log: list[tuple[str, str]] = []
    faults: list[list] = []

    @classmethod
    def scheme(cls):
        return "memtest"


def test_remote_download_dir_goes_through_filesystems(server, media, tmp_path):
    _MemoryFileSystem.objects.clear()
    body = media["video"].read_bytes()
    url = server.add("/v.mp4", body)
    cfg = config(tmp_path, download_dir="memtest://bucket/videos")
    result = download_one(candidate(url), cfg)
    assert isinstance(result, DownloadedVideo), result
    assert result.path == "memtest://bucket/videos/vid.mp4" and result.codec == "h264"
    assert _MemoryFileSystem.objects[result.path] == body  # whole, under its final name
    assert set(_MemoryFileSystem.objects) == {result.path, "memtest://bucket/videos/vid.json"}  # no temp names left
    requests = len(server.log("/v.mp4"))
    assert download_one(candidate(url), cfg) == result and len(server.log("/v.mp4")) == requests  # reused


def test_stale_staging_directories_are_removed_and_live_ones_kept(tmp_path):
    """A killed worker's staging directory goes at the next start; one with a fresh file (a live transfer of
    another worker, however old its directory) stays."""
    old, live, other = tmp_path / "dl-old", tmp_path / "dl-live", tmp_path / "keep-me"
    for d in (old, live, other):
        d.mkdir()
        (d / "video.mp4.part").write_bytes(b"x")
    day_ago = time.time() - 86400
    for path in (old, old / "video.mp4.part", live, other, other / "video.mp4.part"):
        os.utime(path, (day_ago, day_ago))
    assert download.remove_stale_staging(str(tmp_path)) == [str(old)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl-live", "keep-me"]


def test_a_rerun_repeats_a_final_failure_without_asking_and_retries_the_rest(server, media, tmp_path):
    """Gone (404) is what the video is: recorded, and a rerun repeats it without a request; a transient failure
    is not recorded (the rerun asks again); --retry-failed asks again for the gone one too."""
    body = media["video"].read_bytes()
    gone = candidate(server.add("/gone.mp4", body, script=[Fault.status_code(404)]), "gone")
    flaky = candidate(server.add("/flaky.mp4", body, script=[Fault.status_code(503)]), "flaky")
    first = [download_one(c, config(tmp_path, retries=0)) for c in (gone, flaky)]
    assert [(o.outcome, o.reason) for o in first] == [("failed", reasons.HTTP_404), ("failed", reasons.HTTP_5XX)]
    sent = {path: len(server.log(path)) for path in ("/gone.mp4", "/flaky.mp4")}
    again = [download_one(c, config(tmp_path, retries=0)) for c in (gone, flaky)]
    assert again[0] == first[0] and len(server.log("/gone.mp4")) == sent["/gone.mp4"]  # not asked again
    assert_stored(again[1], body, tmp_path)  # the transient failure was retried (and the site now answers)
    assert_stored(download_one(gone, config(tmp_path, retry_failed=True)), body, tmp_path)
    assert len(server.log("/gone.mp4")) > sent["/gone.mp4"]
