"""The Dataflow worker image: its entrypoint starts a worker in any month, and a job whose image holds another
Beam or Python than the launcher is refused at launch, in one line."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import apache_beam
import pytest

from pipeline import run
from pipeline.__main__ import main as pipeline_main
from pipeline.cli import worker_image
from pipeline.tools import doctor
from tests.cli_helpers import call_main

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LAUNCHER_TAG = f"beam{apache_beam.__version__}-py{sys.version_info[0]}.{sys.version_info[1]}"
DIGEST = "@sha256:" + "0" * 64


def entrypoint() -> list[str]:
    line = next(line for line in DOCKERFILE.splitlines() if line.startswith("ENTRYPOINT "))
    return json.loads(line.removeprefix("ENTRYPOINT "))


def run_entrypoint(script: str) -> subprocess.CompletedProcess:
    """The ENTRYPOINT's shell line as a worker runs it, with this venv's python and a stand-in for Beam's boot."""
    command = entrypoint()
    assert command[:2] == ["/bin/sh", "-c"] and "/opt/apache/beam/boot" in command[2]
    script = script.replace("python ", f"{sys.executable} ").replace("/opt/apache/beam/boot", "echo booted")
    return subprocess.run([*command[:2], script, *command[3:], "--id=1"], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=120)


def test_the_entrypoint_starts_a_worker_whose_ytdlp_is_120_days_past_its_release():
    pinned = doctor.image_ytdlp_pin()
    assert pinned is not None, "worker-constraints.txt pins no yt-dlp"
    released = datetime.date(*map(int, pinned.split(".")[:3]))
    later = (released + datetime.timedelta(days=120)).isoformat()
    script = entrypoint()[2]
    assert "doctor --worker-start" in script and "&&" not in script  # the check never gates the boot
    done = run_entrypoint(script.replace("--worker-start", f"--worker-start --today {later}", 1))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "booted --id=1"  # Beam's boot gets the worker's arguments
    assert re.search(r"worker start: warn +yt-dlp: \S+ is \d+ days old \(> 90\)", done.stderr), done.stderr


def test_the_entrypoint_boots_even_when_its_check_cannot_run():
    done = run_entrypoint(entrypoint()[2].replace("python -m pipeline doctor", "python -m no_such_module", 1))
    assert done.returncode == 0 and done.stdout.strip() == "booted --id=1", done.stderr


def test_worker_start_check_exits_0_and_warns_120_days_ahead(capsys):
    later = (datetime.date.today() + datetime.timedelta(days=120)).isoformat()
    code, out, err = call_main(pipeline_main, ["doctor", "--worker-start", "--today", later], capsys)
    assert code == 0 and out == ""
    assert re.search(r"^worker start: warn +yt-dlp: .* days old \(> 90\)", err, re.M), err
    code, _, err = call_main(pipeline_main, ["doctor", "--worker-start", "--output", "/tmp"], capsys)
    assert code == 2 and err.startswith("error: --worker-start checks the machine only; drop --output")


def test_youtube_runs_are_warned_at_launch_with_the_fix():
    later = datetime.date.today() + datetime.timedelta(days=10_000)
    local = doctor.youtube_launch_check([], today=later)
    assert local.status == "warn" and "pip install -U" in local.detail
    image = doctor.youtube_launch_check(["--sdk_container_image", "i:t"], today=later)
    assert image.status == "warn" and "the worker image's yt-dlp" in image.detail
    assert "worker-constraints.txt" in image.detail and "rebuild" in image.detail
    assert run.job_checks([], youtube=False) == []


def test_the_image_records_the_versions_the_constraints_pin():
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.M))
    pins = dict(line.split("==") for line in (ROOT / "worker-constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert args["BEAM_VERSION"] == pins["apache-beam"]
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in DOCKERFILE
    assert 'org.genie-worlds.beam-version="${BEAM_VERSION}"' in DOCKERFILE
    assert re.fullmatch(r"3\.\d+", args["PYTHON_VERSION"])


@pytest.mark.parametrize("reference, versions", [
    ("r-docker.pkg.dev/p/genie/pipeline:beam2.77.0-py3.11" + DIGEST, ("2.77", "3.11")),
    ("localhost:5000/pipeline:v3-beam2.78.1-py3.12", ("2.78", "3.12")),
    ("r-docker.pkg.dev/p/genie/pipeline:latest", None),
    ("r-docker.pkg.dev/p/genie/pipeline" + DIGEST, None),
    ("localhost:5000/beam2.77.0-py3.11", None),  # a registry's port and a name, no tag
])
def test_image_versions_are_read_from_the_tag(reference, versions):
    assert worker_image.image_versions(reference) == versions


def test_a_launcher_of_another_beam_or_python_is_refused():
    image = ["--sdk_container_image=r/p:beam2.77.0-py3.11" + DIGEST]
    assert worker_image.check_image(image, ("2.77.0", "3.11.7")).status == "ok"
    beam = worker_image.check_image(image, ("2.78.0", "3.11.7"))
    assert beam.failed and "Beam 2.77 / Python 3.11, this launcher runs Beam 2.78.0 / Python 3.11.7" in beam.detail
    assert "-c worker-constraints.txt" in beam.detail
    assert worker_image.check_image(image, ("2.77.0", "3.12.1")).failed
    untagged = worker_image.check_image(["--sdk_container_image", "r/p:latest"], ("2.77.0", "3.11.7"))
    assert untagged.failed and "beam2.77.0-py3.11@sha256:DIGEST" in untagged.detail
    assert worker_image.check_image(["--runner", "DataflowRunner"]) is None


def test_run_refuses_the_mismatch_in_one_line_before_any_work(tmp_path, capsys):
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text('{"id": "a", "url": "https://example.com/a.mp4", "title": "mario speedrun jump"}\n')
    out = tmp_path / "out"
    argv = ["run", "--catalog", str(catalog), "--output", str(out), "--runner", "DataflowRunner", "--project", "p",
            "--region", "us-central1", "--temp_location", "gs://b/tmp",
            "--sdk_container_image", "r/p/pipeline:beam2.60.0-py3.9" + DIGEST]
    code, stdout, err = call_main(pipeline_main, argv, capsys)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("error: --sdk_container_image holds Beam 2.60 / Python 3.9, "
                                                   f"this launcher runs Beam {apache_beam.__version__}")
    assert err.rstrip().endswith("(see python -m pipeline run --help)")
    assert not out.exists()
