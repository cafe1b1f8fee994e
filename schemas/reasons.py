"""Stage names, outcome values and reason codes: one constant each, used by the stage that decides and by
the stats/report that count. Parametrised reasons (``excluded_word:<w>``, ``unsupported_codec:<name>``)
are built with the helpers below so their prefix is spelt once."""

from __future__ import annotations

# ---- stages (in pipeline order) -------------------------------------------------------------------
STAGE_SEARCH = "search"
STAGE_DOWNLOAD = "download"
STAGE_SEGMENT = "segment"
STAGE_QUALITY = "quality"
STAGE_SHARD = "shard"
STAGES = (STAGE_SEARCH, STAGE_DOWNLOAD, STAGE_SEGMENT, STAGE_QUALITY, STAGE_SHARD)

# ---- outcomes -------------------------------------------------------------------------------------
KEPT = "kept"
DROPPED = "dropped"
FAILED = "failed"
OUTCOMES = (KEPT, DROPPED, FAILED)

ITEM_VIDEO = "video"
ITEM_CLIP = "clip"
ITEM_KINDS = (ITEM_VIDEO, ITEM_CLIP)

# ---- search (dropped) -----------------------------------------------------------------------------
NO_GAME_KEYWORD = "no_game_keyword"
NO_ACTION_WORD = "no_action_word"
EXCLUDED_WORD = "excluded_word"  # excluded_word:<word>
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
DUPLICATE = "duplicate"
# ---- search (failed) ------------------------------------------------------------------------------
BAD_CATALOG_ROW = "bad_catalog_row"
SEARCH_ERROR = "search_error"

# ---- download (failed) ----------------------------------------------------------------------------
HTTP_403 = "http_403"
HTTP_404 = "http_404"
HTTP_429 = "http_429"
HTTP_5XX = "http_5xx"
HTTP_ERROR = "http_error"  # any other HTTP status
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
REDIRECT_LOOP = "redirect_loop"
TOO_LARGE = "too_large"
NO_VIDEO_STREAM = "no_video_stream"
UNSUPPORTED_URL = "unsupported_url"
EXTRACTOR_ERROR = "extractor_error"
BOT_CHECK = "bot_check"
LOGIN_REQUIRED = "login_required"
PRIVATE = "private"
UNAVAILABLE = "unavailable"
GEO_BLOCKED = "geo_blocked"
AGE_RESTRICTED = "age_restricted"
STORAGE_ERROR = "storage_error"
DOWNLOAD_ERROR = "download_error"  # anything not recognised above; the detail has the message
# Not tried (or given up) because the site was blocking this worker (the breaker was open): a rerun into the
# same output tries it again. Used by the search and download stages; the detail says why.
DEFERRED = "deferred"

# ---- segment ---------------------------------------------------------------------------------------
SHORT_TAIL = "short_tail"  # dropped clip-sized remainder at the end of a video
UNSUPPORTED_CODEC = "unsupported_codec"  # unsupported_codec:<name>
CORRUPT_VIDEO = "corrupt_video"
TRUNCATED_VIDEO = "truncated_video"
EMPTY_FILE = "empty_file"
AUDIO_ONLY = "audio_only"
DECODER_CRASH = "decoder_crash"
NO_CLIPS = "no_clips"  # a video all of whose clip windows were dropped
SEGMENT_ERROR = "segment_error"

# ---- quality -----------------------------------------------------------------------------------------
LOW_QUALITY = "low_quality"
QUALITY_ERROR = "quality_error"

# ---- shard -------------------------------------------------------------------------------------------
SHARD_ERROR = "shard_error"


def excluded_word(word: str) -> str:
    return f"{EXCLUDED_WORD}:{word}"


def unsupported_codec(name: str) -> str:
    return f"{UNSUPPORTED_CODEC}:{name}"


def reason_family(reason: str) -> str:
    """The constant a (possibly parametrised) reason code belongs to: ``excluded_word:movie`` -> ``excluded_word``."""
    return reason.split(":", 1)[0]
