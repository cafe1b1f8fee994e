"""The labelling page, driven in real headless Chromium over the DevTools protocol (``--remote-debugging-pipe``):
keys 1-5 score clips, the Save button downloads a CSV, and that CSV loads as a valid label file."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import select
import shutil
import subprocess
import time

import pytest
from PIL import Image

from classifiers import label_sheet
from classifiers.label_sheet import (
    PREVIEW_STEP,
    SheetConfig,
    build_sheet,
    sheet_id,
    spread_candidates,
    stratified_sample,
)
from classifiers.labels import load_labels
from pipeline.shards import write_shard
from pipeline.tools.demo_corpus import clips as synthetic

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """5 videos x 3 clips: drawn platformer gameplay and menus."""
    root = tmp_path_factory.mktemp("sheet")
    (root / "shards").mkdir()
    clips = []
    for v in range(5):
        for i in range(3):
            seed = 10 * v + i
            frames = synthetic.drawn_platformer(seed) if v % 2 == 0 else synthetic.junk_clip("static_menu", seed)
            clips.append(synthetic.make_clip(f"vid{v}", i, frames, title=f"Video {v} & <friends>"))
    write_shard(str(root / "shards" / "shard-00000.tar"), clips)
    return root, clips


def test_stratified_sample_limits_per_video_and_spreads(shards):
    _, clips = shards
    bare = [c.replace(mp4=None) for c in clips]
    picked = stratified_sample(bare, n=8, per_video=2, seed=1)
    assert len(picked) == 8
    per_video: dict[str, list[int]] = {}
    for c in picked:
        per_video.setdefault(c.video_id, []).append(c.clip_index)
    assert max(len(v) for v in per_video.values()) <= 2 and len(per_video) >= 4
    assert all(v == [0, 2] for v in per_video.values() if len(v) == 2)  # first and last: spread in time
    assert [c.clip_key for c in stratified_sample(bare, 8, 2, seed=1)] == [c.clip_key for c in picked]
    scores = {c.clip_key: (i % 5) / 5 + 0.1 for i, c in enumerate(bare)}
    by_score = stratified_sample(bare, n=5, per_video=3, seed=0, scores=scores, bins=5)
    assert len({int(scores[c.clip_key] * 5) for c in by_score}) == 5  # one clip from each score bin


def sheet_data(page) -> dict:
    text = page.read_text()
    return json.loads(text.split('<script id="sheet-data" type="application/json">')[1].split("</script>")[0])


@pytest.fixture
def decoded(shards, monkeypatch):
    """The clip keys the label sheet decodes, in order (``decode_clip`` wrapped; mp4 bytes name the clip)."""
    _, clips = shards
    key_of = {c.mp4: c.clip_key for c in clips}
    assert len(key_of) == len(clips)
    seen: list[str] = []
    real = label_sheet.decode_clip
    monkeypatch.setattr(label_sheet, "decode_clip", lambda mp4: seen.append(key_of[mp4]) or real(mp4))
    return seen


def test_sheet_decodes_only_the_picked_clips(shards, tmp_path, decoded):
    root, _ = shards
    data = sheet_data(build_sheet(SheetConfig(clips=str(root), out=str(tmp_path / "s.html"), n=4, seed=3)))
    keys = [it["key"] for it in data["items"]]
    assert len(keys) == 4 and decoded == keys  # each picked clip once, for its preview; nothing else
    assert data["sheet"] == sheet_id(keys) and len(data["sheet"]) == 16


def test_sheet_with_model_scores_the_candidates_in_one_batch(shards, tmp_path, decoded, monkeypatch):
    """With --model: the candidates (<= per_video per video) are decoded once to be scored, in one
    predict_proba call, and the sheet shows the same scores as scoring each clip on its own."""
    from classifiers.artifact import load_classifier
    from classifiers.models.sklearn_model import SklearnClipModel
    from classifiers.train import TrainConfig, train

    root, clips = shards
    labels = tmp_path / "labels.csv"
    labels.write_text("item_id,score\n" + "".join(f"vid{v},{5 if v % 2 == 0 else 1}\n" for v in range(5)))
    train(TrainConfig(labels=str(labels), clips=str(root), out=str(tmp_path / "m"), folds=2))
    decoded.clear()
    batches: list[int] = []
    real = SklearnClipModel.predict_proba
    monkeypatch.setattr(SklearnClipModel, "predict_proba", lambda self, x: batches.append(len(x)) or real(self, x))
    config = SheetConfig(clips=str(root), out=str(tmp_path / "s.html"), n=4, per_video=2, seed=3,
                         model=str(tmp_path / "m"))
    data = sheet_data(build_sheet(config))
    keys = [it["key"] for it in data["items"]]
    bare = [c.replace(mp4=None) for c in clips]
    candidates = [c.clip_key for c in spread_candidates(bare, 2, 3)]
    assert len(candidates) == 10 and batches == [10]
    assert sorted(decoded) == sorted(candidates + keys)  # candidates to score, then the picked for previews
    monkeypatch.setattr(SklearnClipModel, "predict_proba", real)
    one_by_one = load_classifier(tmp_path / "m")
    by_key = {c.clip_key: c for c in clips}
    for it in data["items"]:
        alone = one_by_one.score_frames([label_sheet.decode_clip(by_key[it["key"]].mp4)])[0]
        assert it["score"] == round(float(alone), 4)


class DevTools:
    """Minimal Chrome DevTools Protocol client over the pipe transport (fd 3 in, fd 4 out, NUL-separated)."""

    def __init__(self, user_data_dir: str):
        cmd_r, self._cmd_w = os.pipe()
        self._resp_r, resp_w = os.pipe()

        def wire():  # in the child: commands on fd 3, responses on fd 4 (dup2 makes them inheritable)
            a, b = os.dup(cmd_r), os.dup(resp_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
             f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"],
            # not close_fds: it runs after wire() and would close 3 and 4 again
            close_fds=False, preexec_fn=wire, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(resp_w)
        self._buf = b""
        self._next = 0
        self.session = None

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._resp_r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._resp_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: bool = True, timeout: float = 30) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def attach_to_page(self) -> None:
        """Send later commands to the browser's (first) page, through a flattened session."""
        target = next(t for t in self.send("Target.getTargets", session=False)["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                 session=False)["sessionId"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def key(self, key: str) -> None:
        codes = {"ArrowRight": 39, "ArrowLeft": 37}
        params = {"key": key, "code": f"Digit{key}" if key.isdigit() else key,
                  "windowsVirtualKeyCode": codes.get(key, ord(key[0]))}
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", **params, **({"text": key} if key.isdigit() else {})})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **params})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", session=False, timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._resp_r)


def wait_ready(browser: DevTools, page) -> None:
    """Navigate to ``page`` and wait until it (not the page before it) has built its cards and decoded every
    preview."""
    url = page.resolve().as_uri()
    browser.send("Page.navigate", {"url": url})
    deadline = time.monotonic() + 30
    while not browser.evaluate(f"location.href === {json.dumps(url)} && !!(window.labelSheet && "
                               "window.labelSheet.ready && "
                               "Array.from(document.images).every(i => i.complete && i.naturalWidth === 160))"):
        assert time.monotonic() < deadline, "the page did not load"
        time.sleep(0.2)


def test_sheet_in_headless_chromium_scores_and_saves_labels(shards, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package `chromium`); the labelling page is untested here")
    root, clips = shards
    page = build_sheet(SheetConfig(clips=str(root), out=str(tmp_path / "sheet.html"), n=6, per_video=2, seed=3))
    html_text = page.read_text()
    data = json.loads(html_text.split('<script id="sheet-data" type="application/json">')[1].split("</script>")[0])
    keys = [it["key"] for it in data["items"]]
    assert len(keys) == 6 and "<friends>" not in html_text  # titles are escaped into JSON, not markup
    preview = Image.open(io.BytesIO(base64.b64decode(data["items"][0]["preview"])))
    assert preview.format == "WEBP" and preview.n_frames == 160 // PREVIEW_STEP and preview.size == (160, 90)

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = DevTools(str(tmp_path / "profile"))
    try:
        browser.attach_to_page()
        browser.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)},
                     session=False)
        wait_ready(browser, page)
        assert browser.evaluate("window.labelSheet.items") == keys
        assert browser.evaluate("document.images.length") == 6
        assert browser.evaluate("document.querySelector('friends') === null")  # a title is text, not markup
        assert "Video 0 & <friends>" in browser.evaluate("document.querySelector('.meta').textContent")
        for key in ("5", "1", "ArrowRight", "4", "ArrowLeft", "2", "5"):
            browser.key(key)
        assert browser.evaluate("window.labelSheet.labels()") == {keys[0]: 5, keys[1]: 1, keys[3]: 2, keys[4]: 5}
        assert browser.evaluate("document.getElementById('progress').textContent") == "4 / 6 labelled"
        # this sheet's labels sit under a key of its own (the sheet id hashes its clip keys)
        stored = browser.evaluate(f"localStorage.getItem('label-sheet:' + {json.dumps(data['sheet'])})")
        assert json.loads(stored) == {keys[0]: 5, keys[1]: 1, keys[3]: 2, keys[4]: 5}
        # the labeller types a name (with characters CSV must quote), then clicks Save with the mouse
        browser.evaluate("document.getElementById('labeller').focus()")
        browser.send("Input.insertText", {"text": 'ann, "the labeller"'})
        browser.evaluate("document.activeElement.blur()")
        box = browser.evaluate("(() => { const r = document.getElementById('save').getBoundingClientRect();"
                               " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            browser.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                      "clickCount": 1})
        saved = downloads / "labels.csv"
        deadline = time.monotonic() + 20
        while not saved.exists():
            assert time.monotonic() < deadline, f"no download in {list(downloads.iterdir())}"
            time.sleep(0.2)
        # another sheet of as many clips starting with the same one (what the old storage key, joined
        # length + first key, could not tell apart) starts empty
        bare = [c.replace(mp4=None) for c in clips]

        def picked(seed):
            return [c.clip_key for c in stratified_sample(bare, 6, 2, seed)]
        seed = next(s for s in range(4, 200) if picked(s)[0] == keys[0] and picked(s) != keys
                    and len(",".join(picked(s))) == len(",".join(keys)))
        other = build_sheet(SheetConfig(clips=str(root), out=str(tmp_path / "other.html"), n=6, per_video=2,
                                        seed=seed))
        wait_ready(browser, other)
        assert browser.evaluate("window.labelSheet.items") == picked(seed)
        assert browser.evaluate("window.labelSheet.labels()") == {}
    finally:
        browser.close()
    labels = load_labels(saved, known_ids={c.clip_key for c in clips})
    assert {k[1]: r.score for k, r in labels.items.items()} == {keys[0]: 5, keys[1]: 1, keys[3]: 2, keys[4]: 5}
    assert all(k[0] == "clip" for k in labels.items)
    assert {r.labels[0].labeller for r in labels.items.values()} == {'ann, "the labeller"'}
