"""``python -m modeling play``: the page in real headless Chromium (keys, reset, a drawn sketch, a file upload)
against a served tiny trained Genie, checked frame for frame against ``Genie.rollout`` with the same actions and
seed; the real CLI over HTTP; one-line startup errors."""

from __future__ import annotations

import base64
import io
import json
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modeling.__main__ import main
from modeling.genie import Genie
from modeling.maskgit import SamplingConfig
from modeling.play import PlayState, make_server
from modeling.prompts import load_prompt
from tests.classifiers.test_label_sheet import CHROMIUM, DevTools
from tests.genie_fixtures import train_tiny_genie

torch.set_num_threads(1)
SAMPLING = SamplingConfig(steps=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    _, run = train_tiny_genie(tmp_path_factory.mktemp("play"))
    return run, str(sorted(run.parent.glob("shards/*.tar"))[0])


def uint8(frame: torch.Tensor) -> np.ndarray:
    """float (3, H, W) -> uint8 (H, W, 3), written out here rather than borrowed from the code under test."""
    return (frame * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def wait_for(browser: DevTools, expression: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not browser.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def press_r(browser: DevTools) -> None:
    params = {"key": "r", "code": "KeyR", "windowsVirtualKeyCode": 82}
    browser.send("Input.dispatchKeyEvent", {"type": "keyDown", **params, "text": "r"})
    browser.send("Input.dispatchKeyEvent", {"type": "keyUp", **params})


def centre_of(browser: DevTools, element_id: str) -> tuple[float, float, float, float]:
    """(x, y, width, height) of an element's box in the viewport (scrolled into view first), in CSS pixels."""
    return tuple(browser.evaluate(f"(() => {{ const e = document.getElementById('{element_id}'); "
                                  "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                                  "return [r.x, r.y, r.width, r.height]; })()"))


def click(browser: DevTools, element_id: str) -> None:
    x, y, w, h = centre_of(browser, element_id)
    for kind in ("mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x + w / 2, "y": y + h / 2, "button": "left",
                                                  "buttons": 1 if kind == "mousePressed" else 0, "clickCount": 1})


def test_the_model_runs_on_one_thread_whichever_thread_asks(tiny):
    # The HTTP server answers each request on a new thread; CUDA graphs are recorded per thread.
    run, shard = tiny
    genie = Genie.load(run)
    seen = set()
    eager = genie.dynamics_step

    def step(*args):
        seen.add(threading.get_ident())
        return eager(*args)

    genie.dynamics_step = step
    state = PlayState(genie, load_prompt(shard, num_frames=1), SAMPLING)
    callers = [threading.Thread(target=state.step, args=(a,)) for a in (0, 1, 2)]
    for t in callers:
        t.start()
        t.join()
    state.reset(seed=3)
    state.step(1)
    assert len(state.actions) == 1 and len(seen) == 1
    assert seen.isdisjoint({threading.get_ident(), *(t.ident for t in callers)})


def test_page_in_headless_chromium_plays_exactly_the_keys_pressed(tiny, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package `chromium`); the play page is untested here")
    run, shard = tiny
    genie = Genie.load(run)
    prompt = load_prompt(shard, start=4, num_frames=2)
    state = PlayState(genie, prompt, SAMPLING, seed=3, label="tiny clip")
    server = make_server(state, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    browser = DevTools(str(tmp_path / "profile"))
    try:
        browser.attach_to_page()
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900, "deviceScaleFactor": 1,
                                                            "mobile": False})
        browser.send("Page.navigate", {"url": url})
        wait_for(browser, "!!(window.genie && window.genie.ready)")
        assert browser.evaluate("document.querySelectorAll('#actions button').length") == genie.num_actions == 4
        assert browser.evaluate("document.getElementById('prompt-name').textContent") == "prompt: tiny clip"

        # keys: 7 is no action of this 4-action model and must not reach the server
        for key in ("2", "0", "3", "7"):
            browser.key(key)
        assert "no action 7" in browser.evaluate("document.getElementById('error').textContent")
        for key in ("3", "1"):
            browser.key(key)
        wait_for(browser, "window.genie.pending === 0 && window.genie.numFrames === 7")
        assert state.actions == [2, 0, 3, 3, 1]
        assert browser.evaluate("window.genie.actions") == [2, 0, 3, 3, 1]
        expected = genie.rollout(prompt, torch.tensor([[2, 0, 3, 3, 1]]), SAMPLING, seed=3)["frames"][0]
        assert torch.equal(torch.stack(state.session.frames, 1)[0], expected)
        wait_for(browser, "document.getElementById('frame').complete && "
                          "document.getElementById('frame').naturalWidth === 160")
        shown = decode_data_url(browser.evaluate("document.getElementById('frame').src"))
        assert np.array_equal(shown, uint8(expected[-1]))  # the page shows the newest frame, losslessly
        strip = browser.evaluate("Array.from(document.querySelectorAll('#filmstrip img')).map(i => i.src)")
        assert len(strip) == 7
        assert all(np.array_equal(decode_data_url(s), uint8(f)) for s, f in zip(strip, expected, strict=True))

        # R resets to the prompt with the same seed: the first step replays the rollout's first frame
        press_r(browser)
        wait_for(browser, "window.genie.pending === 0 && window.genie.numFrames === 2")
        assert state.actions == []
        browser.key("1")
        wait_for(browser, "window.genie.pending === 0 && window.genie.numFrames === 3")
        again = genie.rollout(prompt, torch.tensor([[1]]), SAMPLING, seed=3)["frames"][0, -1]
        assert state.actions == [1] and torch.equal(state.session.frames[-1][0], again)

        # draw a horizontal stroke on the sketch canvas with the mouse, then play from it
        x, y, w, h = centre_of(browser, "sketch")
        sx, sy = w / 160, h / 90  # CSS pixels per canvas pixel
        points = [(x + cx * sx, y + 45 * sy) for cx in range(30, 131, 10)]
        browser.send("Input.dispatchMouseEvent", {"type": "mousePressed", "x": points[0][0], "y": points[0][1],
                                                  "button": "left", "buttons": 1, "clickCount": 1})
        for px, py in points[1:]:
            browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": px, "y": py, "button": "left",
                                                      "buttons": 1})
        browser.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": points[-1][0], "y": points[-1][1],
                                                  "button": "left", "buttons": 0, "clickCount": 1})
        click(browser, "sketch-use")
        wait_for(browser, "window.genie.pending === 0 && window.genie.promptFrames === 1 && "
                          "window.genie.numFrames === 1")
        assert state.label == "sketch" and state.actions == []
        sketch_prompt = state.prompt[0, 0]
        assert float(sketch_prompt[:, 45, 40:120].max()) < 0.3  # the stroke (pen #202020)
        assert float(sketch_prompt[:, 5:20, :].min()) == 1.0 and float(sketch_prompt[:, 70:, :].min()) == 1.0
        browser.key("0")
        wait_for(browser, "window.genie.pending === 0 && window.genie.numFrames === 2")
        from_sketch = genie.rollout(state.prompt, torch.tensor([[0]]), SAMPLING, seed=3)["frames"][0, -1]
        assert state.actions == [0] and torch.equal(state.session.frames[-1][0], from_sketch)

        # upload an image file through the file input (a small RGBA drawing)
        upload = tmp_path / "upload.png"
        drawing = Image.new("RGBA", (64, 36), (0, 0, 0, 0))
        ImageDraw.Draw(drawing).ellipse([20, 8, 44, 28], fill=(0, 90, 200, 255))
        drawing.save(upload)
        root = browser.send("DOM.getDocument")["root"]["nodeId"]
        node = browser.send("DOM.querySelector", {"nodeId": root, "selector": "#upload"})["nodeId"]
        browser.send("DOM.setFileInputFiles", {"files": [str(upload)], "nodeId": node})
        wait_for(browser, "window.genie.pending === 0 && "
                          "document.getElementById('prompt-name').textContent === 'prompt: upload.png'")
        assert torch.equal(state.prompt, load_prompt(upload)) and state.session.num_frames == 1
        assert browser.evaluate("document.getElementById('error').textContent") == ""
    finally:
        browser.close()
        server.shutdown()
        server.server_close()


def _http(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_cli_serves_the_page_and_steps_over_http(tiny):
    run, shard = tiny
    proc = subprocess.Popen([sys.executable, "-m", "modeling", "play", "--checkpoint", str(run), "--prompt", shard,
                             "--port", "0", "--steps", "1", "--seed", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "the server printed no URL"
        line = proc.stdout.readline()
        assert line.startswith("Genie play: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[2]
        status, page = _http(url)
        assert status == 200 and b"<title>Genie: play</title>" in page
        status, body = _http(url + "step", json.dumps({"action": 1}).encode())
        assert status == 200
        step = json.loads(body)
        assert step["index"] == 1 and step["actions"] == [1]
        genie = Genie.load(run)
        expected = genie.rollout(load_prompt(shard), torch.tensor([[1]]), SamplingConfig(steps=1), seed=4)
        assert np.array_equal(decode_data_url(step["frame"]), uint8(expected["frames"][0, -1]))
        status, body = _http(url + "step", json.dumps({"action": 4}).encode())
        assert status == 400 and "0..3" in json.loads(body)["error"]
        status, body = _http(url + "prompt", b"not an image")
        assert status == 400 and json.loads(body)["error"].startswith("not a readable image")
        status, body = _http(url + "state")
        assert status == 200 and json.loads(body)["actions"] == [1]
        status, video = _http(url + "video.mp4")
        with av.open(io.BytesIO(video)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert status == 200 and len(frames) == 2 and frames[0].shape == (90, 160, 3)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_startup_mistakes_are_one_line_errors(tiny, tmp_path, capsys):
    run, shard = tiny
    assert main(["play", "--checkpoint", str(tmp_path / "nowhere"), "--prompt", shard]) == 2
    assert capsys.readouterr().err.strip().startswith("error: run directory")
    assert main(["play", "--checkpoint", str(run), "--prompt", str(tmp_path / "absent.png")]) == 2
    assert capsys.readouterr().err.strip() == f"error: prompt file not found: {tmp_path / 'absent.png'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["play", "--checkpoint", str(run), "--prompt", shard, "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and len(err.splitlines()) == 1
