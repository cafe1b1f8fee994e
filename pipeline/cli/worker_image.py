"""The worker image's Beam and Python versions, read from its reference, against the launcher's.

A Dataflow job runs the launcher's pickled pipeline in the image's SDK harness: a Beam or Python major.minor
that differs between the two fails on the workers (unpickling, the runner API), after the job has started and
paid for them. The image says which versions it holds in its tag, ``beam<BEAM>-py<PYTHON>`` (the Dockerfile's
``BEAM_VERSION`` and ``PYTHON_VERSION``, which it also sets as labels and asserts at build time), so the
launcher checks it from the reference alone, without pulling the image; a digest may follow the tag and names
the exact build (``REGION-docker.pkg.dev/P/genie/pipeline:beam2.77.0-py3.11@sha256:...``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from pipeline.cli.preflight import Check

IMAGE_FLAGS = ("--sdk_container_image", "--worker_harness_container_image")  # Beam's name, and its old alias
_VERSIONS_TAG = re.compile(r"(?:^|[-_.])beam(\d+\.\d+)(?:\.\d+)*-py(\d+\.\d+)(?=$|[-_.@])")
INSTALL_FIX = ("install the launcher with pip install -c worker-constraints.txt -e '.[dataflow]' on the image's "
               "Python, or build an image for this launcher (docs/pipeline.md, Running on Dataflow)")


def image_reference(beam_args: Sequence[str]) -> str | None:
    """The worker image named among Beam's flags (``--sdk_container_image X`` or ``=X``), or None."""
    for index, arg in enumerate(beam_args):
        name, eq, value = arg.partition("=")
        if name in IMAGE_FLAGS:
            return value if eq else (beam_args[index + 1] if index + 1 < len(beam_args) else None)
    return None


def image_versions(reference: str) -> tuple[str, str] | None:
    """(Beam major.minor, Python major.minor) from an image reference's tag, or None when it carries none."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _VERSIONS_TAG.search(last.split(":", 1)[1])
    return (match.group(1), match.group(2)) if match else None


def major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def launcher_versions() -> tuple[str, str]:
    """(Beam version, Python version) of this process."""
    import apache_beam

    return apache_beam.__version__, ".".join(map(str, sys.version_info[:3]))


def check_image(beam_args: Sequence[str], launcher: tuple[str, str] | None = None) -> Check | None:
    """None without a worker image; else whether the image's Beam and Python major.minor are the launcher's."""
    reference = image_reference(beam_args)
    if reference is None:
        return None
    beam, python = launcher or launcher_versions()
    image = image_versions(reference)
    if image is None:
        return Check("worker-image", "FAIL",
                     f"--sdk_container_image {reference} does not say which Beam and Python it holds: tag it "
                     f"beam<BEAM>-py<PYTHON> as the Dockerfile's build command in docs/pipeline.md does (this "
                     f"launcher: ...:beam{beam}-py{major_minor(python)}@sha256:DIGEST)")
    if image != (major_minor(beam), major_minor(python)):
        return Check("worker-image", "FAIL",
                     f"--sdk_container_image holds Beam {image[0]} / Python {image[1]}, this launcher runs Beam "
                     f"{beam} / Python {python}: they must match (major.minor); {INSTALL_FIX}")
    return Check("worker-image", "ok", f"{reference}: Beam {image[0]} / Python {image[1]}, as this launcher")
