"""Cookies and proxies for the site, read on each worker from a local or ``gs://`` path.

The launcher's disk is not the workers' disk, so the options hold only *paths*; each worker process reads
the files through Beam ``FileSystems`` when its DoFn is set up (``stage_cookies``, ``read_proxies``). The
contents never enter the job graph (which Dataflow shows in its console) and are never logged. A cookies
file that cannot be read or parsed is refused with a message naming the path, at launch (``check``) and on
the worker, instead of yt-dlp running without it and meeting the bot check.

Cookies are parsed with yt-dlp's own jar (``YoutubeDLCookieJar``, Netscape ``cookies.txt``), the parser
that will use them. yt-dlp writes the jar back when it closes, so each process gets a private copy
(mode 0600, removed at exit) instead of the shared original.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import http.cookiejar
import os
import tempfile
import time

from apache_beam.io.filesystems import FileSystems
from yt_dlp.cookies import YoutubeDLCookieJar

SITE_DOMAINS = ("youtube.com", "google.com")  # the cookies that matter for expiry (sign-in, bot check)


class CredentialsError(ValueError):
    """A cookies or proxies file that cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class CookieFacts:
    """What a cookies file holds (never the values)."""

    count: int
    site_count: int  # cookies for SITE_DOMAINS
    site_expired: int  # of those, expired (session cookies, expiry 0, never count as expired)
    earliest_site_expiry: float | None  # unix time


def _read(path: str, what: str) -> bytes:
    try:
        with FileSystems.open(path) as stream:
            return stream.read()
    except Exception as exc:  # noqa: BLE001 - any filesystem's error becomes one clear message
        raise CredentialsError(f"cannot read {what} {path}: {type(exc).__name__}: {exc}") from None


def _load_jar(local_path: str, source: str) -> YoutubeDLCookieJar:
    jar = YoutubeDLCookieJar(local_path)
    try:
        jar.load(ignore_discard=True, ignore_expires=True)
    except (http.cookiejar.LoadError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise CredentialsError(f"cookies file {source} is not a Netscape cookies.txt: {exc}") from None
    if not len(jar):
        raise CredentialsError(f"cookies file {source} holds no cookies")
    return jar


def cookie_facts(jar: http.cookiejar.CookieJar, now: float | None = None) -> CookieFacts:
    now = time.time() if now is None else now
    site = [c for c in jar if c.domain.lstrip(".").endswith(SITE_DOMAINS)]
    expiring = [c.expires for c in site if c.expires]
    return CookieFacts(count=len(jar), site_count=len(site), site_expired=sum(1 for e in expiring if e < now),
                       earliest_site_expiry=min(expiring) if expiring else None)


def stage_cookies(path: str) -> tuple[str, CookieFacts]:
    """Copy the cookies at ``path`` (local or any Beam filesystem) into a private local file and parse it.

    Returns (local path for yt-dlp's ``cookiefile``, facts); raises ``CredentialsError``.
    """
    data = _read(path, "cookies file")
    fd, local = tempfile.mkstemp(prefix="genie-cookies-", suffix=".txt")  # created 0600
    atexit.register(_remove, local)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    try:
        jar = _load_jar(local, path)
    except CredentialsError:
        _remove(local)
        raise
    return local, cookie_facts(jar)


def check_cookies(path: str) -> CookieFacts:
    """Read and parse the cookies at ``path`` without keeping a copy (launch-time and doctor check)."""
    local, facts = stage_cookies(path)
    _remove(local)
    return facts


def read_proxies(path: str) -> list[str]:
    """Proxy URLs from ``path``, one per line (``#`` comments and blank lines skipped); at least one."""
    try:
        text = _read(path, "proxies file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CredentialsError(f"proxies file {path} is not UTF-8 text ({exc})") from None
    proxies = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "://" not in line:
            raise CredentialsError(f"proxies file {path}: line {number} is not a proxy URL (expected "
                                   "scheme://host:port, e.g. socks5://10.0.0.2:1080)")
        proxies.append(line)
    if not proxies:
        raise CredentialsError(f"proxies file {path} lists no proxy")
    return proxies


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
