# Worker container for running `python -m pipeline run` on Dataflow (docs/pipeline.md, "Running on Dataflow").
# The launcher's Beam and Python (major.minor) must be the image's: `run` refuses a job whose
# --sdk_container_image does not carry this launcher's versions in its tag, beam<BEAM_VERSION>-py<PYTHON_VERSION>
# (pipeline/cli/worker_image.py). BEAM_VERSION is worker-constraints.txt's apache-beam pin (a test checks both).
ARG BEAM_VERSION=2.77.0
ARG PYTHON_VERSION=3.11
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}
ARG BEAM_VERSION
ARG PYTHON_VERSION
LABEL org.genie-worlds.beam-version="${BEAM_VERSION}" org.genie-worlds.python-version="${PYTHON_VERSION}"

# ffmpeg: the fallback tools and the reference the tests compare against; the decoders themselves ship with
# the decord and PyAV wheels.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

# glibc's tuning for the workers: the same values as pipeline/runtime/process_memory.py's ALLOCATOR_ENV (why there).
# Two malloc arenas: the per-thread arenas kept what the SDK harness's bundle threads freed.
ENV MALLOC_ARENA_MAX=2

WORKDIR /opt/genie-worlds
COPY pyproject.toml README.md worker-constraints.txt ./
COPY schemas schemas
COPY pipeline pipeline
COPY classifiers classifiers
COPY modeling modeling

# CPU torch first (the quality classifier's CNN family loads with it); from PyPI it would be the CUDA build.
# The youtube extra brings yt-dlp's challenge solver and Deno, which real YouTube downloads need; the
# constraints pin the tested versions so workers encode clips byte for byte as the tests did.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -c worker-constraints.txt ".[dataflow,youtube]" \
 && deno --version \
 && python -c "import decord, av, apache_beam, pipeline.run, pipeline.runtime.worker_start" \
 && python -c "import apache_beam, sys; v = apache_beam.__version__, '%d.%d' % sys.version_info[:2]; \
assert v == ('${BEAM_VERSION}', '${PYTHON_VERSION}'), v" \
 && python -m pipeline doctor

# The base image's ENTRYPOINT (/opt/apache/beam/boot) starts the SDK harness. Every worker first logs the
# doctor's machine checks (yt-dlp's age, JS runtime + solver, ffmpeg) and then starts whatever they found: an
# image is used for months, and a worker that exits at start-up only makes Dataflow retry it in a loop. The
# age that matters is judged at launch (`pipeline run --youtube` warns, with the fix).
ENTRYPOINT ["/bin/sh", "-c", "python -m pipeline doctor --worker-start; exec /opt/apache/beam/boot \"$@\"", "boot"]
