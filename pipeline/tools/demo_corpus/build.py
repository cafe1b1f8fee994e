"""Build a corpus from a plan: render videos in parallel processes, add the fault files, write the catalog.

Reruns into the same directory overwrite every file with identical bytes; files in ``videos/`` and
``actions/`` that the plan does not name (left by a build with other options) are removed, so the directory
always holds exactly one corpus.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

from pipeline.tools.demo_corpus import catalog, spec
from pipeline.tools.demo_corpus.render import RenderResult, render_video, video_relpath


def _render_one(args: tuple[spec.VideoSpec, str]) -> RenderResult:
    return render_video(*args)


def _remove_stale(root: Path, keep: set[str]) -> None:
    for folder in ("videos", "actions"):
        for path in (root / folder).iterdir():
            if path.is_file() and f"{folder}/{path.name}" not in keep:
                path.unlink()


def build_corpus(plan: spec.CorpusPlan, out: str | Path, jobs: int = 2,
                 log: Callable[[str], None] = lambda _: None) -> dict[str, RenderResult]:
    """Render ``plan`` into ``out``; returns the render result of each video, by id."""
    root = Path(out)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "actions").mkdir(parents=True, exist_ok=True)
    # longest first, so the last video to finish is a short one and the workers stay busy
    order = sorted(plan.videos, key=lambda v: (-v.num_steps, v.video_id))
    work = [(v, str(root)) for v in order]
    results: dict[str, RenderResult] = {}
    if jobs <= 1:
        done = map(_render_one, work)
    else:
        # spawn, not fork: each worker starts clean (no inherited encoder or game state)
        pool = multiprocessing.get_context("spawn").Pool(jobs)
        done = pool.imap_unordered(_render_one, work)
    try:
        for result in done:
            results[result.video_id] = result
            log(f"  {len(results):3d}/{len(work)}  {result.file}  {result.num_frames} frames")
    finally:
        if jobs > 1:
            pool.close()
            pool.join()

    keep = {r.file for r in results.values()} | {r.actions_file for r in results.values()}
    for entry in plan.entries:
        if entry.fault == "truncated":  # an interrupted download: the first half of a real file's bytes
            data = (root / video_relpath(entry.file_id)).read_bytes()
            target = root / catalog.entry_url(entry)
            target.write_bytes(data[: len(data) // 2])
            keep.add(catalog.entry_url(entry))
    _remove_stale(root, keep)
    catalog.write_all(root, plan, results)
    return results
