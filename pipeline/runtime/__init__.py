"""The processes of a run: Ctrl-C and SIGTERM (``interrupts``), where messages go (``run_log``), the progress
the workers tally and the launcher shows (``progress``), how a worker hands freed memory back
(``process_memory``) and the plugin every SDK worker imports at its start (``worker_start``). Beam's own
internals are in ``pipeline.beam_runtime``, not here.
"""
