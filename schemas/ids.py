"""Id rules: turn arbitrary source ids into keys that are safe as WebDataset sample keys and file names.

WebDataset splits a tar member name at its first dot and treats ``/`` as a directory, and source ids come from the
internet (dots, slashes, ``..``, control characters, hundreds of characters). The mapping is injective:
- a safe id (``[A-Za-z0-9_-]``, at most ``MAX_VERBATIM`` chars, no leading ``-``, not shaped like a hashed key) is
  used verbatim, so well-behaved ids (YouTube's 11 characters) stay readable;
- any other id becomes ``<sanitised prefix>-h<16 hex of sha256(id)>``: a verbatim key never equals a hashed one,
  and two hashed keys collide only if 64 bits of SHA-256 do.
No key starts with ``-``, which ``rm``, ``tar`` or ``gsutil`` would read as an option. Keys keep the id's case, so
on a case-insensitive disk (macOS, Windows) ``Abc`` and ``abc`` name one file: keep ``--download-dir`` and
``--output`` on a case-sensitive filesystem or object store.
"""

from __future__ import annotations

import hashlib
import re

SAFE_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
HASH_SUFFIX = re.compile(r"-h[0-9a-f]{16}$")
MAX_VERBATIM = 64
PREFIX_CHARS = 40
MAX_KEY_LEN = PREFIX_CHARS + 18  # prefix + "-h" + 16 hex
MAX_CLIP_KEY_LEN = max(MAX_VERBATIM, MAX_KEY_LEN) + 11  # + "_s" + 9 digits of milliseconds
_EXTENSION = re.compile(r"^[a-z0-9]{1,8}$")


def video_key(source_id: str) -> str:
    """Stable, collision-free, filesystem- and WebDataset-safe key for a source video id."""
    if not isinstance(source_id, str) or source_id == "":
        raise ValueError(f"video id must be a non-empty string, got {source_id!r}")
    if (SAFE_KEY.match(source_id) and len(source_id) <= MAX_VERBATIM and not source_id.startswith("-")
            and not HASH_SUFFIX.search(source_id)):
        return source_id
    digest = hashlib.sha256(source_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    prefix = SAFE_CHARS.sub("_", source_id).strip("_-")[:PREFIX_CHARS] or "id"
    return f"{prefix}-h{digest}"


def clip_key(source_id: str, start_s: float) -> str:
    """Key of the clip of ``source_id`` starting at ``start_s`` (millisecond resolution; no dots)."""
    if start_s < 0:
        raise ValueError(f"clip start must be >= 0 s, got {start_s!r}")
    return f"{video_key(source_id)}_s{round(start_s * 1000):09d}"


def is_safe_key(key: str) -> bool:
    return bool(SAFE_KEY.match(key)) and len(key) <= MAX_CLIP_KEY_LEN


def storage_name(source_id: str, extension: str) -> str:
    """File name for a video's stored file: its key plus a validated extension."""
    ext = extension.lower().lstrip(".")
    if not _EXTENSION.match(ext):
        raise ValueError(f"file extension must be 1-8 lowercase letters/digits, got {extension!r}")
    return f"{video_key(source_id)}.{ext}"


def storage_path(root: str, source_id: str, extension: str) -> str:
    """Path under ``root`` (local directory or ``gs://`` URL) where a video's file is stored.

    The name never contains a separator or ``..``, so the result always stays inside ``root``. An empty root is
    refused: it would otherwise become the filesystem root (``"" -> "/<name>"``), a likely accident (an unset
    variable) rather than a wish; pass ``"/"`` to mean the root.
    """
    if not isinstance(root, str) or not root.strip():
        raise ValueError(f"storage root must be a non-empty directory or URL, got {root!r}")
    root = root.rstrip("/") or "/"
    return f"{root}/{storage_name(source_id, extension)}" if root != "/" else f"/{storage_name(source_id, extension)}"
