# Worker container for running `python -m pipeline run` on Dataflow (docs/pipeline.md, "Running on Dataflow").
# The base image must match the Beam version and Python minor version that launch the job.
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

# ffmpeg: the fallback tools and the reference the tests compare against; the decoders themselves ship with
# the decord and PyAV wheels.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

# glibc's tuning for the workers: the same values as pipeline/process_memory.py's ALLOCATOR_ENV (why there).
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
 && python -c "import decord, av, apache_beam, pipeline.run, pipeline.worker_start" \
 && python -m pipeline doctor

# The base image's ENTRYPOINT (/opt/apache/beam/boot) starts the SDK harness. Run the doctor's machine checks
# (yt-dlp not too old, JS runtime + solver, ffmpeg) first on every worker start: an image whose yt-dlp has aged
# past --max-ytdlp-age-days fails at start-up, before the job hammers YouTube with a broken extractor.
ENTRYPOINT ["/bin/sh", "-c", "python -m pipeline doctor && exec /opt/apache/beam/boot \"$@\"", "boot"]
