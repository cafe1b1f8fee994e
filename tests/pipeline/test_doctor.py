"""``python -m pipeline doctor``: each check against real files, a real loopback port and the real yt-dlp."""

from __future__ import annotations

import datetime
import time

from pipeline.__main__ import main as pipeline_main
from pipeline.cli import preflight
from pipeline.tools import doctor
from tests.fault_server import FaultServer


def cookies_file(path, expires: int) -> str:
    path.write_text("# Netscape HTTP Cookie File\n"
                    f".youtube.com\tTRUE\t/\tTRUE\t{expires}\tLOGIN_INFO\tabc\n"
                    f".youtube.com\tTRUE\t/\tTRUE\t{expires}\tSID\tdef\n")
    return str(path)


def test_ytdlp_age():
    today = datetime.date(2026, 3, 1)
    assert doctor.check_ytdlp(90, today, "2026.01.15").status == "ok"
    old = doctor.check_ytdlp(90, today, "2025.10.22.1")
    assert old.status == "FAIL" and "130 days old (> 90)" in old.detail
    assert doctor.check_ytdlp(90, today, "1.2.3-dev").status == "warn"
    assert doctor.check_ytdlp(10_000).status == "ok"  # the installed yt-dlp's version is a date


def test_cookies_readable_and_not_expired(tmp_path):
    future, past = int(time.time()) + 30 * 86400, int(time.time()) - 86400
    good = doctor.check_cookies_file(cookies_file(tmp_path / "good.txt", future))
    assert good.status == "ok" and "2 youtube.com/google.com cookies" in good.detail and "expires in 30 days" in good.detail
    expired = doctor.check_cookies_file(cookies_file(tmp_path / "old.txt", past))
    assert expired.status == "FAIL" and "expired" in expired.detail
    (tmp_path / "junk.txt").write_text("not cookies")
    assert "not a Netscape cookies.txt" in doctor.check_cookies_file(str(tmp_path / "junk.txt")).detail
    assert "cannot read" in doctor.check_cookies_file(str(tmp_path / "none.txt")).detail
    for check in (good, expired):
        assert "abc" not in check.line() and "def" not in check.line()  # never the values


def test_proxies_reachable_and_output_writable(tmp_path):
    with FaultServer() as closed:
        dead = closed.url("")  # nothing listens there any more
    with FaultServer() as live:
        assert doctor.check_proxies([live.url("")]).status == "ok"
        mixed = doctor.check_proxies([live.url(""), dead], timeout_s=2.0)
        assert mixed.status == "warn" and "1 of 2 reachable; not: #2" in mixed.detail
    assert doctor.check_proxies([dead], timeout_s=2.0).status == "FAIL"
    assert preflight.check_writable_dir(str(tmp_path / "out"), "--output").status == "ok"
    assert not (tmp_path / "out").exists()  # checked, not created
    (tmp_path / "file").write_text("x")
    blocked = preflight.check_writable_dir(str(tmp_path / "file" / "out"), "--output")  # under a regular file
    assert blocked.status == "FAIL" and "cannot be created" in blocked.detail


def test_doctor_reports_the_runs_own_preflight_checks(tmp_path, capsys):
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text('{"id": "a", "url": "a.mp4"}\nnot json\n')
    args = ["doctor", "--catalog", str(catalog), "--catalog", str(tmp_path / "missing.jsonl"),
            "--max-ytdlp-age-days", "100000"]
    assert pipeline_main(args) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("warn  catalog:") and "line 2: not valid JSON" in line for line in lines), lines
    assert any(line.startswith("FAIL  catalog:") and "missing.jsonl" in line for line in lines), lines
    assert any(line.startswith("ok    keywords:") for line in lines), lines


def test_doctor_prints_one_line_per_check_and_fails_on_any_failure(tmp_path, capsys):
    args = ["doctor", "--output", str(tmp_path), "--cookies", cookies_file(tmp_path / "c.txt", 1000),
            "--max-ytdlp-age-days", "100000"]
    assert pipeline_main(args) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1].rstrip(":") for line in lines[:-1]] == ["yt-dlp", "js-runtime", "ffmpeg", "cookies",
                                                                     "output"]
    assert lines[3].startswith("FAIL  cookies:") and "cookies" in lines[-1] and lines[-1].startswith("doctor: ")
