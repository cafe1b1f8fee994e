"""Write the corpus' catalog (JSONL + CSV), stand-in hand labels (labels.csv, labels_holdout.csv) and manifest.

Paths in the catalog (``url``, ``actions``) are relative to the catalog file's directory, so the corpus can
be moved or served over HTTP as a whole. Labels are ``schemas.HandLabel`` rows; they are derived from how
each video was generated and stand in for the human labels the paper collected.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pipeline.tools.demo_corpus import spec
from pipeline.tools.demo_corpus.render import RenderResult, actions_relpath, video_relpath
from schemas import HandLabel, ids, reasons

CATALOG_FIELDS = ("id", "url", "title", "description", "duration_s", "channel", "actions")
LABEL_FIELDS = ("item_id", "item_kind", "score", "labeller", "note")
LABELLER = "demo-generator"

KIND_NOTES = {
    spec.CLEAN: "clean gameplay",
    "facecam": "streamer face-cam box over gameplay",
    "static_menu": "static title/menu screen",
    "slideshow": "slideshow of still images",
    "black_fade": "mostly black, gameplay fading in and out",
    "text_overlay": "heavy chat/subtitle text over gameplay",
    "letterbox": "tiny gameplay letterboxed in a black frame",
    "non_platformer": "not a platformer",
    "intro_menu": "gameplay after a 10 s title menu",
    "small_facecam": "gameplay with a small corner face-cam",
    "fade_cuts": "gameplay with repeated cuts to black",
}


def entry_url(entry: spec.CatalogEntry) -> str:
    """The row's url, relative to the corpus root: faults get a file of their own (or none)."""
    return video_relpath(entry.video_id if entry.fault else entry.file_id)


def catalog_rows(plan: spec.CorpusPlan) -> list[dict]:
    rows = []
    for e in plan.entries:
        row: dict = {"id": e.video_id, "url": entry_url(e), "title": e.title, "description": e.description}
        if e.duration_s is not None:
            row["duration_s"] = e.duration_s
        row["channel"] = e.channel
        if e.with_actions:
            row["actions"] = actions_relpath(e.file_id)
        row.update(dict(e.extra))
        rows.append(row)
    return rows


def labels(plan: spec.CorpusPlan, label_set: str) -> list[HandLabel]:
    return [HandLabel(item_id=v.video_id, score=v.label, item_kind=reasons.ITEM_VIDEO, labeller=LABELLER,
                      note=f"{v.kind}: {KIND_NOTES[v.kind]} (derived from generation, not a human label)")
            for v in plan.videos if v.label is not None and v.label_set == label_set]


def manifest(plan: spec.CorpusPlan, results: dict[str, RenderResult]) -> dict:
    """corpus.json: how every video was generated and what each catalog row is expected to become."""
    videos = []
    for v in plan.videos:
        r = results[v.video_id]
        videos.append({"id": v.video_id, "key": ids.video_key(v.video_id), "kind": v.kind, "game": v.game,
                       "label": v.label, "label_set": v.label_set, "seed": v.seed, "level": v.level,
                       "overlay": v.overlay, "duration_s": v.duration_s, "num_steps": r.num_steps,
                       "num_frames": r.num_frames, "segments": [[s.content, s.duration_s] for s in v.segments],
                       "file": r.file, "actions": r.actions_file, "size_bytes": r.size_bytes,
                       "sha256": r.sha256})
    rows = [{"id": e.video_id, "url": entry_url(e), "file_of": e.file_id, "fault": e.fault, "expect": e.expect}
            for e in plan.entries]
    total_s = sum(v.duration_s for v in plan.videos)
    return {"generator": "pipeline.tools.demo_corpus", "seed": plan.seed, "scale": plan.scale, "faults": plan.faults,
            "video_fps": spec.VIDEO_FPS, "step_fps": spec.STEP_FPS, "frames_per_step": spec.FRAMES_PER_STEP,
            "width": spec.WIDTH, "height": spec.HEIGHT,
            "totals": {"videos": len(videos), "catalog_rows": len(rows), "duration_s": round(total_s, 1),
                       "size_bytes": sum(r.size_bytes for r in results.values())},
            "videos": videos, "catalog": rows}


def _csv_text(rows: list[dict], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in fields})
    return buf.getvalue()


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


LABEL_FILES = {"train": "labels.csv", "holdout": "labels_holdout.csv"}  # label set -> file name


def write_labels(root: Path, plan: spec.CorpusPlan) -> dict[str, Path]:
    """Write ``labels.csv`` and ``labels_holdout.csv``; returns their paths by label set. They depend on the
    plan alone (no rendered file), so tests can check the full corpus' label files without rendering it."""
    paths = {}
    for label_set, name in LABEL_FILES.items():
        paths[label_set] = root / name
        _write(paths[label_set], _csv_text([lab.to_dict() for lab in labels(plan, label_set)], list(LABEL_FIELDS)))
    return paths


def write_all(root: Path, plan: spec.CorpusPlan, results: dict[str, RenderResult]) -> None:
    rows = catalog_rows(plan)
    _write(root / "catalog.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    fields = list(CATALOG_FIELDS) + sorted({k for r in rows for k in r} - set(CATALOG_FIELDS))
    _write(root / "catalog.csv", _csv_text(rows, fields))
    write_labels(root, plan)
    _write(root / "corpus.json", json.dumps(manifest(plan, results), ensure_ascii=False, indent=1) + "\n")
