"""``python -m pipeline doctor``: check what a YouTube run needs before it starts paying for workers.

One line per check (``ok``/``FAIL``/``warn``), exit status 1 when any check fails. Without options it checks
the machine (yt-dlp recent enough, a JavaScript runtime and yt-dlp's challenge solver, ffmpeg). With the run's
``--cookies``, ``--proxy``/``--proxies-file`` and ``--output`` it also checks those, reading them the way the
run will (Beam ``FileSystems``, so ``gs://`` paths work). yt-dlp is the part that ages: YouTube changes its
player every few weeks and old versions fail every download, so a release older than ``--max-ytdlp-age-days``
fails (``--today`` judges it as of another date).

``--worker-start`` is what the worker image runs before Beam's SDK harness on every worker (Dockerfile
ENTRYPOINT): the machine checks, each failure logged as a warning, exit status 0 whatever they find. An image
ages while it is used: a worker must start in any month (a catalog-only job needs no yt-dlp at all), so the
age is judged at launch instead (``pipeline run --youtube``: ``youtube_launch_check``), and a worker's log
only warns.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from pipeline.cli import options, preflight
from pipeline.cli.options import option
from pipeline.cli.preflight import Check
from pipeline.site.credentials import CredentialsError, check_cookies, read_proxies
from schemas import clip_format
from schemas.cli import StrictParser

DEFAULT_MAX_YTDLP_AGE_DAYS = 90
JS_RUNTIMES = ("deno", "node", "bun")  # yt-dlp's order of preference
# What the worker image installs (Dockerfile); present in a checkout and in the image.
WORKER_CONSTRAINTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                  "worker-constraints.txt")


def ytdlp_release_age(version: str, today: datetime.date) -> int | None:
    """Days since a yt-dlp release (versions are dates: ``2026.11.23`` or ``2026.11.23.1``); None if not one."""
    try:
        year, month, day = (int(p) for p in version.split(".")[:3])
        return (today - datetime.date(year, month, day)).days
    except ValueError:
        return None


def installed_ytdlp() -> str | None:
    try:
        from yt_dlp.version import __version__
    except ImportError:
        return None
    return __version__


def check_ytdlp(max_age_days: int, today: datetime.date | None = None, version: str | None = None,
                fix: str = "run pip install -U 'yt-dlp[default]'", what: str = "") -> Check:
    """yt-dlp ``version`` (default: the installed one) released at most ``max_age_days`` before ``today``."""
    version = version or installed_ytdlp()
    if version is None:
        return Check("yt-dlp", "FAIL", f"yt-dlp is not installed: {fix}")
    age = ytdlp_release_age(version, today or datetime.date.today())
    if age is None:
        return Check("yt-dlp", "warn", f"{what}version {version} is not a release date; cannot tell its age")
    if age > max_age_days:
        return Check("yt-dlp", "FAIL", f"{what}{version} is {age} days old (> {max_age_days}): YouTube changes "
                                       f"often and old versions fail its downloads; {fix}")
    return Check("yt-dlp", "ok", f"{what}{version} ({age} days old)")


def image_ytdlp_pin(constraints: str = WORKER_CONSTRAINTS) -> str | None:
    """The yt-dlp version the worker image installs (``worker-constraints.txt``); None without that file."""
    try:
        with open(constraints) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    return next((line.split("==", 1)[1].strip() for line in lines if line.startswith("yt-dlp==")), None)


def youtube_launch_check(beam_args: Sequence[str], today: datetime.date | None = None,
                         max_age_days: int = DEFAULT_MAX_YTDLP_AGE_DAYS) -> Check:
    """yt-dlp's age, as ``pipeline run --youtube`` checks it at launch (a warning, never a refusal): the
    launcher's own yt-dlp for a local run; for a job on a worker image (``--sdk_container_image``), the version
    the image installs (``worker-constraints.txt``), whose fix is a rebuilt image."""
    from pipeline.cli.worker_image import image_reference

    if image_reference(beam_args) is not None:
        pinned = image_ytdlp_pin()
        if pinned is not None:
            return as_warning(check_ytdlp(max_age_days, today, pinned, what="the worker image's yt-dlp ",
                                          fix="raise yt-dlp in worker-constraints.txt, then rebuild and push the "
                                              "image (docs/pipeline.md, Running on Dataflow)"))
    return as_warning(check_ytdlp(max_age_days, today))


def worker_start_checks(today: datetime.date | None = None,
                        max_age_days: int = DEFAULT_MAX_YTDLP_AGE_DAYS) -> list[Check]:
    """The worker image's start-up checks: the machine's, every failure a warning (the worker starts anyway)."""
    checks = [check_ytdlp(max_age_days, today, fix="YouTube downloads on this worker will likely fail; raise "
                                                   "yt-dlp in worker-constraints.txt and rebuild the image"),
              check_js_runtime(None, None), check_ffmpeg()]
    return [as_warning(c) for c in checks]


def as_warning(check: Check) -> Check:
    """``check``, a failure turned into a warning (reported, nothing stops)."""
    return dataclasses.replace(check, status="warn") if check.failed else check


def check_js_runtime(js_runtime: str | None, remote_components: Sequence[str] | None) -> Check:
    """A runtime for YouTube's player challenges, and yt-dlp's solver (yt-dlp-ejs, or fetched remotely)."""
    if js_runtime:
        name, _, path = js_runtime.partition(":")
        found = path if path and os.access(path, os.X_OK) else (None if path else shutil.which(name))
    else:
        name, found = next(((n, shutil.which(n)) for n in JS_RUNTIMES if shutil.which(n)), ("", None))
    if not found:
        wanted = js_runtime or " / ".join(JS_RUNTIMES)
        return Check("js-runtime", "FAIL", f"no JavaScript runtime ({wanted}) found: YouTube's challenges cannot "
                                           "be solved and most formats will be missing")
    if importlib.util.find_spec("yt_dlp_ejs") is None and not any(c.startswith("ejs") for c in remote_components or []):
        return Check("js-runtime", "FAIL", f"{name} at {found}, but yt-dlp's solver yt-dlp-ejs is not installed "
                                           "(pip install 'yt-dlp[default]', or pass --remote-components ejs:npm)")
    return Check("js-runtime", "ok", f"{name} at {found}")


def check_ffmpeg() -> Check:
    found = shutil.which("ffmpeg")
    return Check("ffmpeg", "ok", found) if found else Check("ffmpeg", "FAIL", "ffmpeg not on PATH")


def check_cookies_file(path: str) -> Check:
    try:
        facts = check_cookies(path)
    except CredentialsError as exc:
        return Check("cookies", "FAIL", str(exc))
    if facts.site_count == 0:
        return Check("cookies", "FAIL", f"{path}: {facts.count} cookies, none for youtube.com or google.com")
    if facts.site_expired == facts.site_count:
        return Check("cookies", "FAIL", f"{path}: all {facts.site_count} youtube.com/google.com cookies have "
                                        "expired: export them again from a signed-in browser")
    detail = f"{path}: {facts.site_count} youtube.com/google.com cookies"
    if facts.site_expired:
        return Check("cookies", "warn", f"{detail}, {facts.site_expired} expired")
    if facts.earliest_site_expiry is not None:
        days = (facts.earliest_site_expiry - datetime.datetime.now().timestamp()) / 86400
        detail += f", the first expires in {days:.0f} days"
    return Check("cookies", "ok", detail)


def check_proxies(proxies: list[str], timeout_s: float = 5.0) -> Check:
    """TCP reachability of each proxy (a connection, not a request through it); named by index, not URL:
    proxy URLs may hold passwords."""
    down = []
    for index, proxy in enumerate(proxies):
        parts = urlsplit(proxy)
        try:
            with socket.create_connection((parts.hostname, parts.port or 1080), timeout=timeout_s):
                pass
        except (OSError, ValueError):
            down.append(index + 1)
    if len(down) == len(proxies):
        return Check("proxies", "FAIL", f"none of {len(proxies)} proxies accepts connections")
    if down:
        return Check("proxies", "warn", f"{len(proxies) - len(down)} of {len(proxies)} reachable; "
                                        f"not: #{', #'.join(map(str, down))}")
    return Check("proxies", "ok", f"all {len(proxies)} reachable")


@dataclasses.dataclass(frozen=True)
class DoctorConfig:
    """What to check besides the machine: the run's credentials, JS runtime and output, as the run names them."""

    cookies: str | None = option("--cookies", default=None, help="the run's cookies.txt (local or gs://)")
    proxy: str | None = option("--proxy", default=None, help="the run's proxy URL")
    proxies_file: str | None = option("--proxies-file", default=None, help="the run's proxies file (local or gs://)")
    output: str | None = option("--output", default=None, help="the run's --output (checked writable)")
    js_runtime: str | None = option("--js-runtime", default=None,
                                    help="the run's --js-runtime (default: any of deno, node, bun)")
    remote_components: tuple[str, ...] = option("--remote-components", action="append", default=(),
                                                flag_default=None, to_field=lambda names, _: tuple(names or ()),
                                                help="the run's --remote-components")
    max_ytdlp_age_days: int = option("--max-ytdlp-age-days", type=int, default=DEFAULT_MAX_YTDLP_AGE_DAYS,
                                     help="oldest acceptable yt-dlp release (default %(default)d days)")
    today: datetime.date | None = option("--today", type=datetime.date.fromisoformat, default=None,
                                         help="judge yt-dlp's age as of this date, YYYY-MM-DD (default: today), "
                                              "e.g. to see whether an image will still pass when a job runs")
    worker_start: bool = option("--worker-start", action="store_true", default=False,
                                help="the worker image's start-up check (Dockerfile ENTRYPOINT): the machine "
                                     "checks only, each failure a warning in the worker's log; exit 0")
    catalogs: tuple[str, ...] = option("--catalog", action="append", default=(), flag_default=None,
                                       to_field=lambda paths, _: tuple(paths or ()),
                                       help="the run's catalog(s): readable, rows counted, bad rows named")
    keywords: str | None = option("--keywords", default=None, help="the run's keywords file")
    classifier: str | None = option("--classifier", default=None,
                                    help="the run's classifier: loads, and was trained on 160x90 clips at 10 FPS "
                                         "(the run itself checks its own --clip-size/--clip-fps)")


def run_checks(config: DoctorConfig) -> list[Check]:
    checks = [check_ytdlp(config.max_ytdlp_age_days, config.today), check_js_runtime(config.js_runtime, config.remote_components),
              check_ffmpeg()]
    if config.cookies:
        checks.append(check_cookies_file(config.cookies))
    if config.proxy or config.proxies_file:
        try:
            proxies = (([config.proxy] if config.proxy else [])
                       + (read_proxies(config.proxies_file) if config.proxies_file else []))
            checks.append(check_proxies(proxies))
        except CredentialsError as exc:
            checks.append(Check("proxies", "FAIL", str(exc)))
    if config.output:
        checks.append(preflight.check_writable_dir(config.output, "--output"))
    checks += [preflight.check_catalog(path)[0] for path in config.catalogs]
    if config.keywords or config.catalogs:
        checks.append(preflight.check_keywords(config.keywords))
    if config.classifier:
        checks.append(preflight.check_classifier(config.classifier, clip_format.CLIP_WIDTH,
                                                 clip_format.CLIP_HEIGHT, clip_format.CLIP_FPS))
    return checks


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(prog="python -m pipeline doctor",
                          description="Check what a run needs before it starts paying for workers: yt-dlp's age, "
                                      "a JavaScript runtime, ffmpeg, and the run's credentials, output, catalogs, "
                                      "keywords and classifier (the same checks `run` makes at launch).")
    options.add_options(parser, DoctorConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    config = options.build(DoctorConfig, parser.parse_args(argv))
    if config.worker_start:
        others = [f for f, v in (("--cookies", config.cookies), ("--proxy", config.proxy),
                                 ("--proxies-file", config.proxies_file), ("--output", config.output),
                                 ("--catalog", config.catalogs), ("--keywords", config.keywords),
                                 ("--classifier", config.classifier)) if v]
        if others:
            parser.error(f"--worker-start checks the machine only; drop {', '.join(others)}")
        for check in worker_start_checks(config.today, config.max_ytdlp_age_days):
            print(f"worker start: {check.line()}", file=sys.stderr)
        return 0
    checks = run_checks(config)
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.status == "FAIL"]
    print(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}" if failed else "doctor: all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
