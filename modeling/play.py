"""``python -m modeling play``: play a trained Genie in the browser, one latent action per key press.

    python -m modeling play --checkpoint RUN --prompt shot.png [--port 8000]

Serves ``play_page.html`` on 127.0.0.1 with the standard library's HTTP server (the model is the only heavy part):

    GET  /            the page
    GET  /state       model facts (num_actions, window), seed, sampling, actions taken, the latest frames
    POST /step        {"action": k} -> the next frame as a PNG data URL (k in 0 .. num_actions-1)
    POST /reset       {"seed": s} (optional) -> back to the prompt; the same seed replays the same rollout
    POST /prompt      an image file's bytes (upload, or the page's sketch canvas as PNG) -> new prompt, reset
    GET  /video.mp4   the session so far as an H.264 clip

One batch-1 ``Genie`` session serves requests in order, so a page shows exactly ``Genie.rollout(prompt, actions,
sampling, seed)``. No authentication, loopback only: from a remote GPU machine, ``ssh -L 8000:127.0.0.1:8000 host``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from importlib import resources
from typing import Any

import numpy as np
import torch

from modeling.cli_args import StrictParser, UsageError, add_model_args, load_model_args
from modeling.genie import Genie
from modeling.maskgit import SamplingConfig
from modeling.prompts import PromptError, describe, frames_to_prompt, load_image_bytes
from schemas.clip_codec import encode_clip
from schemas.figures import data_url, encode_image, to_uint8

HOST = "127.0.0.1"
FILMSTRIP = 16  # latest frames /state sends (a reloaded page shows these)
MAX_UPLOAD_BYTES = 32 * 1024 * 1024


def png_data_url(frame: torch.Tensor) -> str:
    """float (3, H, W) in [0, 1] -> ``data:image/png;base64,...`` (lossless: the page shows the exact frame)."""
    return data_url(encode_image(to_uint8(frame)))


class PlayState:
    """The one interactive rollout (batch 1) behind the page: prompt, seeded session, actions taken so far.

    The model runs on one thread of its own, whichever request thread asks: the server answers each request on a
    new thread, and CUDA graphs (``--compile``) are recorded per thread, so steps from fresh threads would record
    them again on every key press.
    """

    def __init__(self, genie: Genie, prompt: torch.Tensor, sampling: SamplingConfig | None = None, seed: int = 0,
                 use_cache: bool = True, label: str = "prompt", context: str = "window"):
        self.genie, self.sampling = genie, sampling or genie.sampling
        self.seed, self.use_cache, self.label, self.context = seed, use_cache, label, context
        self.lock = threading.Lock()
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genie")
        self.prompt = prompt
        self.reset()

    def reset(self, prompt: torch.Tensor | None = None, seed: int | None = None, label: str | None = None) -> None:
        with self.lock:
            if prompt is not None:
                self.prompt, self.label = prompt, label or "uploaded image"
            if seed is not None:
                self.seed = int(seed)
            self.session = self.model_thread.submit(self.genie.start, self.prompt, use_cache=self.use_cache,
                                                    seed=self.seed, context=self.context).result()
            self.actions: list[int] = []
            self.prompt_frames = self.session.num_frames
            self.last_step_ms: float | None = None

    def step(self, action: Any) -> dict[str, Any]:
        """Generate the next frame for ``action``; ValueError (a 400 for the page) when it is not a valid action."""
        n = self.genie.num_actions
        if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action < n:
            raise ValueError(f"action must be an integer in 0..{n - 1} (this model has {n} latent actions), "
                             f"got {action!r}")
        with self.lock:
            started = time.perf_counter()
            frame = self.model_thread.submit(self.session.step, action, self.sampling).result()[0]
            self.last_step_ms = 1000 * (time.perf_counter() - started)
            self.actions.append(action)
            return {"index": self.session.num_frames - 1, "action": action, "frame": png_data_url(frame),
                    "ms": round(self.last_step_ms, 1), "num_frames": self.session.num_frames,
                    "actions": list(self.actions)}

    def state(self) -> dict[str, Any]:
        with self.lock:
            frames = self.session.frames
            first = max(0, len(frames) - FILMSTRIP)
            return {"num_actions": self.genie.num_actions, "window": self.genie.window, "prompt": self.label,
                    "seed": self.seed, "sampling": asdict(self.sampling), "use_cache": self.use_cache,
                    "context": self.context,
                    "device": str(self.genie.device), "actions": list(self.actions),
                    "prompt_frames": self.prompt_frames, "num_frames": len(frames), "first_frame_index": first,
                    "frames": [png_data_url(f[0]) for f in frames[first:]]}

    def video_mp4(self) -> bytes:
        with self.lock:
            return encode_clip(np.stack([to_uint8(f[0]) for f in self.session.frames]))


class _Handler(http.server.BaseHTTPRequestHandler):
    state: PlayState  # set on the subclass make_server builds
    page: bytes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: the page polls nothing
        pass

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        self._send(status, json.dumps(doc).encode("utf-8"), "application/json")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_UPLOAD_BYTES:
            raise ValueError(f"upload too large ({length} bytes; at most {MAX_UPLOAD_BYTES})")
        return self.rfile.read(length)

    def _json_body(self) -> dict[str, Any]:
        raw = self._body()
        try:
            doc = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"request body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("request body must be a JSON object")
        return doc

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, self.page, "text/html; charset=utf-8")
        elif path == "/state":
            self._json(200, self.state.state())
        elif path == "/video.mp4":
            self._send(200, self.state.video_mp4(), "video/mp4",
                       {"Content-Disposition": 'attachment; filename="genie-rollout.mp4"'})
        else:
            self._json(404, {"error": f"no such page: {path}"})

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        try:
            if path == "/step":
                self._json(200, self.state.step(self._json_body().get("action")))
            elif path == "/reset":
                seed = self._json_body().get("seed")
                if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                    raise ValueError(f"seed must be an integer, got {seed!r}")
                self.state.reset(seed=seed)
                self._json(200, self.state.state())
            elif path == "/prompt":
                frames = load_image_bytes(self._body(), size=self.state.genie.frame_size)
                self.state.reset(prompt=frames_to_prompt(frames), label=self.headers.get("X-Prompt-Name"))
                self._json(200, self.state.state())
            else:
                self._json(404, {"error": f"no such endpoint: POST {path}"})
        except (PromptError, ValueError) as exc:
            self._json(400, {"error": str(exc)})


def make_server(state: PlayState, port: int = 0) -> http.server.ThreadingHTTPServer:
    """An HTTP server for ``state`` on 127.0.0.1:``port`` (0: a free port); call ``serve_forever`` to run it."""
    page = resources.files("modeling").joinpath("play_page.html").read_bytes()
    handler = type("PlayHandler", (_Handler,), {"state": state, "page": page})
    server = http.server.ThreadingHTTPServer((HOST, port), handler)
    server.daemon_threads = True
    return server


def _parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="python -m modeling play", epilog="See docs/generation.md.",
                     description="Play a trained Genie in the browser (127.0.0.1), one latent action per key press.")
    add_model_args(p)
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks a free one)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sampling, prompt, genie = load_model_args(args)
        state = PlayState(genie, prompt, sampling, args.seed, not args.no_cache, describe(args.prompt), args.context)
        server = make_server(state, args.port)
    except (FileNotFoundError, PromptError, UsageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the port is taken, or not ours to bind
        print(f"error: cannot listen on {HOST}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"Genie play: http://{host}:{port}/  ({genie.num_actions} actions: keys 0-{genie.num_actions - 1}; "
          f"Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
