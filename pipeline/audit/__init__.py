"""The audit of a run: every item's fate, the conservation law, and what a run writes about itself.

``aggregates`` (the law as a keyed sum and the bounded combiners behind ``stats.json``), ``audit_stage`` (the
audit as a distributed step: per-item tables written by the workers, ``stats.json`` last), ``manifest`` (the
kept clips' table), ``report`` (``report.html``), ``summary`` (the lines a run prints), ``exit_status`` (the
run's exit code from its stats) and ``audit_command`` (``python -m pipeline audit``: the same from stored
tables).
"""
