"""Turn what yt-dlp, HTTP servers and sockets raise into the stable reason codes of ``schemas.reasons``.

yt-dlp reports every failure as a ``DownloadError`` with free text and the original exception in ``exc_info``
(an ``HTTPError``, a ``TransportError``, an ``ExtractorError`` with YouTube's refusal text). Counting runs by reason
needs one code per cause, so this module walks that chain once and keeps the original message as the detail.
Evidence order: exception types first, then message text, and only yt-dlp's own words: URLs, host names, quoted
paths and the ``[extractor] <id>:`` prefix come from the (hostile) input and are removed before matching, so
``Unsupported URL: http://cdn/x/timeout-signin.mp4`` is not read as a timeout. Refusal texts match
case-insensitively with typographic apostrophes folded. Some outcomes exist only as text: "Did not get any data
blocks" (``empty_file``) and "N bytes read, M more expected" (``connection_error``).
"""

from __future__ import annotations

import dataclasses
import email.utils
import re
import socket
import time
from collections.abc import Iterator

from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import ContentTooShortError, ExtractorError, GeoRestrictedError, UnsupportedError

from schemas import reasons

# Failures worth another attempt after a pause; everything else is final for this run.
TRANSIENT_REASONS = frozenset({reasons.HTTP_429, reasons.HTTP_5XX, reasons.TIMEOUT, reasons.CONNECTION_ERROR})
# Failures that say what the video *is*, whoever asks and however: gone, private, not a video. A rerun into the
# same output repeats the recorded outcome instead of asking the site again (``--retry-failed`` asks anyway).
# Not here: blocks and sign-in/age/geo gates (they depend on the client, its cookies or its proxy), transient
# faults, storage errors and anything unrecognised.
FINAL_REASONS = frozenset({reasons.HTTP_404, reasons.PRIVATE, reasons.UNAVAILABLE, reasons.UNSUPPORTED_URL,
                           reasons.NO_VIDEO_STREAM, reasons.EMPTY_FILE})

# (reason, pattern) in priority order: the bot check and the age gate both start with "Sign in", so they
# must be tried before the generic login rule.
_REFUSALS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE)) for reason, pattern in (
        (reasons.BOT_CHECK, r"not a bot|confirm you'?re not a robot|unusual traffic|captcha"),
        (reasons.AGE_RESTRICTED, r"confirm your age|age[- ]restricted|inappropriate for some users"),
        (reasons.PRIVATE, r"private video|this video is private|video is private"),
        (reasons.GEO_BLOCKED, r"not (?:made this video )?available in your country|geo[- ]?restrict"
                              r"|from your location|in your region"),
        (reasons.LOGIN_REQUIRED, r"sign in|log ?in required|login required|requires? (?:an? )?(?:account|login)"
                                 r"|members[- ]only|available to this channel's members|requires payment"
                                 r"|use --cookies|--username"),
        (reasons.UNAVAILABLE, r"video unavailable|no longer available|has been removed|been terminated"
                              r"|this video is unavailable|content isn't available|does not exist"),
    )
)
_REDIRECT_LOOP = re.compile(r"redirect loop|too many redirects|exceeded \d+ redirects", re.IGNORECASE)
_TIMEOUT = re.compile(r"timed out|timeout", re.IGNORECASE)
_NO_FORMAT = re.compile(r"requested format is not available|no video formats found|no formats? found"
                        r"|only images are available|no video stream", re.IGNORECASE)
_UNSUPPORTED = re.compile(r"unsupported url|no suitable extractor|file:// urls are disabled"
                          r"|is not a valid url|unknown url type", re.IGNORECASE)
_NO_FILE = re.compile(r"no such file or directory", re.IGNORECASE)
_NO_DATA = re.compile(r"did not get any data blocks", re.IGNORECASE)
_INCOMPLETE = re.compile(r"\d+ bytes read, \d+ more expected|content too short", re.IGNORECASE)
_ERROR_PREFIX = re.compile(r"^(?:ERROR:\s*)+")
# Parts of a message that come from the input, not from yt-dlp: never matched against the rules above.
_INPUT_PARTS = (
    re.compile(r"^\[[^\]\s]+\]\s+[^:]*?:\s+"),  # "[generic] <video id>: " (the id is the URL's last segment)
    re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\")>]*"),  # URLs
    re.compile(r"\bhost=(['\"])[^'\"]*\1"),  # urllib3's "HTTPConnectionPool(host='...')"
    re.compile(r"(['\"])(?:/|[A-Za-z]:\\)[^'\"]*\1"),  # quoted file paths
)


@dataclasses.dataclass(frozen=True)
class Failure:
    """A classified failure: the reason code, the original message, and a server's wish for a pause."""

    reason: str
    detail: str
    retry_after_s: float | None = None  # from a Retry-After header, when the server sent one

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT_REASONS


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (yt-dlp's exc_info/cause, Python's __cause__/__context__)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        exc_info = getattr(current, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1 and isinstance(exc_info[1], BaseException):
            todo.append(exc_info[1])
        for attr in ("cause", "__cause__", "__context__"):
            inner = getattr(current, attr, None)
            if isinstance(inner, BaseException):
                todo.append(inner)


def find_in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of type ``kind`` in ``exc``'s chain (yt-dlp wraps what a request raised)."""
    return next((e for e in _chain(exc) if isinstance(e, kind)), None)


def clean_message(exc: BaseException | str) -> str:
    """yt-dlp's message without its ``ERROR:`` prefix and with apostrophes folded to ASCII."""
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    return _ERROR_PREFIX.sub("", text.replace("\u2019", "'")).strip()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def http_reason(status: int) -> str:
    if status == 403:
        return reasons.HTTP_403
    if status == 404:
        return reasons.HTTP_404
    if status == 429:
        return reasons.HTTP_429
    if 500 <= status < 600:
        return reasons.HTTP_5XX
    return reasons.HTTP_ERROR


def own_words(exc: BaseException | str) -> str:
    """The part of a message yt-dlp wrote: ``clean_message`` without URLs, hosts, paths and the video id."""
    text = clean_message(exc)
    for pattern in _INPUT_PARTS:
        text = pattern.sub(" ", text)
    return text


def _is_timeout(exc: BaseException) -> bool:
    """Python's and the HTTP stacks' timeout types (urllib3's and requests' do not all derive TimeoutError)."""
    return isinstance(exc, TimeoutError | socket.timeout) or type(exc).__name__.endswith(("Timeout", "TimeoutError"))


def classify(exc: BaseException) -> Failure:
    """The reason code for any exception raised while extracting or downloading one video."""
    chain = list(_chain(exc))
    detail = clean_message(exc)
    texts = " | ".join(own_words(e) for e in chain)

    def raised(*types: type) -> bool:
        return any(isinstance(e, types) for e in chain)

    # 1. Types that settle the cause on their own.
    if raised(GeoRestrictedError):
        return Failure(reasons.GEO_BLOCKED, detail)
    if raised(UnsupportedError):
        return Failure(reasons.UNSUPPORTED_URL, detail)
    if raised(FileNotFoundError):  # file:// URLs
        return Failure(reasons.UNAVAILABLE, detail)
    if any(_is_timeout(e) for e in chain):
        return Failure(reasons.TIMEOUT, detail)
    http = next((e for e in chain if isinstance(e, HTTPError)), None)
    # 2. A site's refusal is the most specific thing we can say, even when it came with an HTTP status.
    if raised(ExtractorError) or http is None:
        for reason, pattern in _REFUSALS:
            if pattern.search(texts):
                return Failure(reason, detail)
    if _REDIRECT_LOOP.search(texts):
        return Failure(reasons.REDIRECT_LOOP, detail)
    if http is not None:
        headers = getattr(getattr(http, "response", None), "headers", None) or {}
        retry_after = parse_retry_after(headers.get("Retry-After")) if hasattr(headers, "get") else None
        return Failure(http_reason(http.status), detail, retry_after)
    # 3. What yt-dlp reports only as text (report_error without an exception).
    if _TIMEOUT.search(texts):
        return Failure(reasons.TIMEOUT, detail)
    if _UNSUPPORTED.search(texts):
        return Failure(reasons.UNSUPPORTED_URL, detail)
    if _NO_FORMAT.search(texts):
        return Failure(reasons.NO_VIDEO_STREAM, detail)
    if _NO_DATA.search(texts):
        return Failure(reasons.EMPTY_FILE, f"the server sent an empty body (0 bytes): {detail}")
    if _NO_FILE.search(texts):
        return Failure(reasons.UNAVAILABLE, detail)
    if raised(TransportError, ContentTooShortError, ConnectionError) or _INCOMPLETE.search(texts):
        return Failure(reasons.CONNECTION_ERROR, detail)
    if raised(ExtractorError):
        return Failure(reasons.EXTRACTOR_ERROR, detail)
    return Failure(reasons.DOWNLOAD_ERROR, f"{type(exc).__name__}: {detail}")
