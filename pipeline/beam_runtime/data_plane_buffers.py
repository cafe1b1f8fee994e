"""How much data an SDK worker buffers on Beam's data plane: outputs sent at 1 MB, queues capped at 8 MB.

Why: Beam's SDK harness flushes each output at 10 MB (keeping the buffer after the bundle) and lets its data-plane
queues hold 100 MB each; at scale those fill, per process and bundle thread, on top of the work. With these sizes
the audit's worker peak stays flat at the same speed (docs/measurements/2026-12-04-audit-worker-memory.md).
How: Beam has no option for them; they are constants of ``apache_beam.runners.worker.data_plane`` (the flush
threshold bound as a default argument), so ``apply`` sets them in every SDK worker before it opens its channels,
through ``with_worker_plugin`` (``pipeline.runtime.worker_start`` on ``--beam_plugins``). Each worker logs the sizes
it set; on a Beam without these names ``apply`` warns and keeps Beam's sizes, and
``tests/pipeline/test_data_plane_buffers.py`` fails. ``pipeline run --no-worker-plugin`` leaves the plugin out.
"""

from __future__ import annotations

import inspect
import logging

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

log = logging.getLogger(__name__)

FLUSH_BYTES = 1 << 20  # per output stream of a bundle (Beam's default: 10 MB)
QUEUE_BYTES = 8 << 20  # per data-plane queue: send, staging, and received per bundle (Beam's default: 100 MB)
WORKER_PLUGIN = "pipeline.runtime.worker_start"  # every SDK worker imports it at start: it calls apply()
# `pipeline run --no-worker-plugin` adds this to Beam's experiments: the job's options say that its workers keep
# Beam's sizes, and a local job's own process (pipeline.job_process) reads it from the same flags.
NO_PLUGIN_EXPERIMENT = "genie_no_worker_plugin"
CHECKED_BEAM = ("2.77.0", "2.78.0")  # Beams whose data plane has the names apply() sets (the test fails on one without)
_STREAM_CLASSES = ("SizeBasedBufferingClosableOutputStream", "TimeBasedBufferingClosableOutputStream")


def _set_default(function, name: str, value) -> None:
    """Set the default value of ``function``'s keyword argument ``name`` (Beam binds its constant there)."""
    with_defaults = [p.name for p in inspect.signature(function).parameters.values() if p.default is not p.empty]
    defaults = list(function.__defaults__)
    defaults[with_defaults.index(name)] = value
    function.__defaults__ = tuple(defaults)


def apply(flush_bytes: int | None = FLUSH_BYTES, queue_bytes: int | None = QUEUE_BYTES) -> bool:
    """In this process, send each bundle output once it holds ``flush_bytes`` and cap each of Beam's data-plane
    queues at ``queue_bytes`` (None: Beam's size). True when applied, False (with a warning) on a Beam without
    these names."""
    from apache_beam.runners.worker import data_plane

    needed = [*_STREAM_CLASSES, "_DEFAULT_SIZE_FLUSH_THRESHOLD"]
    needed += ["_DEFAULT_SEND_QUEUE_MAX_BYTES"] if queue_bytes is not None else []
    missing = [name for name in needed if not hasattr(data_plane, name)]
    classes = [getattr(data_plane, name) for name in _STREAM_CLASSES if name not in missing]
    missing += [f"{cls.__name__}(size_flush_threshold=...)" for cls in classes
                if "size_flush_threshold" not in inspect.signature(cls.__init__).parameters]
    if missing:  # checked before anything is changed
        log.warning("data-plane buffers NOT set (pipeline.beam_runtime.data_plane_buffers, checked against Beam %s; "
                    "this is Beam %s): its data plane has no %s, so this worker keeps Beam's sizes",
                    " and ".join(CHECKED_BEAM), _beam_version(), ", ".join(missing))
        return False
    beam_flush, beam_queue = data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD, getattr(
        data_plane, "_DEFAULT_SEND_QUEUE_MAX_BYTES", None)
    if flush_bytes is not None:
        data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD = flush_bytes  # the channel's send batches are cut at it too
        for cls in classes:
            _set_default(cls.__init__, "size_flush_threshold", flush_bytes)
    if queue_bytes is not None:
        data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES = queue_bytes  # read when a channel is created
    log.info("data-plane buffers set (pipeline.beam_runtime.data_plane_buffers, Beam %s): outputs sent at %s (Beam's: %s), "
             "queues capped at %s (Beam's: %s)", _beam_version(), _size(flush_bytes or beam_flush),
             _size(beam_flush), _size(queue_bytes or beam_queue), _size(beam_queue))
    return True


def _size(n_bytes: int | None) -> str:
    return "?" if n_bytes is None else f"{n_bytes / (1 << 20):g} MB"


def _beam_version() -> str:
    import apache_beam

    return apache_beam.__version__


def flush_bytes() -> int:
    """The flush threshold an output stream created now gets, in this process."""
    from apache_beam.runners.worker import data_plane

    return data_plane.SizeBasedBufferingClosableOutputStream()._size_flush_threshold


def with_worker_plugin(options: PipelineOptions) -> PipelineOptions:
    """``options`` with ``WORKER_PLUGIN`` among Beam's ``--beam_plugins`` (kept once; the user's plugins stay)."""
    setup = options.view_as(SetupOptions)
    plugins = list(setup.beam_plugins or [])
    if WORKER_PLUGIN not in plugins:
        setup.beam_plugins = plugins + [WORKER_PLUGIN]
    return options


def plugin_turned_off(options: PipelineOptions) -> bool:
    """Whether the job's flags ask for no worker plugin (``NO_PLUGIN_EXPERIMENT``)."""
    from apache_beam.options.pipeline_options import DebugOptions

    return NO_PLUGIN_EXPERIMENT in (options.view_as(DebugOptions).experiments or [])


def without_worker_plugin(options: PipelineOptions) -> PipelineOptions:
    """``options`` whose workers keep Beam's own buffer sizes (for measuring against them)."""
    setup = options.view_as(SetupOptions)
    setup.beam_plugins = [p for p in setup.beam_plugins or [] if p != WORKER_PLUGIN] or None
    return options
