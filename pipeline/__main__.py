"""``python -m pipeline <command>``: ``demo-corpus`` renders the built-in corpus, ``run`` builds a dataset,
``finalize`` does what ``run`` does after its job for a job it did not wait for (``run --detach``), ``audit``
re-renders a run's stats and report from its stored tables, ``doctor`` checks the machine and
credentials a YouTube run needs, ``plan`` estimates a catalog's cost on Dataflow, ``procgen-dataset`` writes the CoinRun case-study dataset (Appendix F)."""

from __future__ import annotations

import sys

from schemas.cli import fail, listing, unknown_flag_message

COMMANDS = {
    "demo-corpus": ("pipeline.tools.demo_corpus", "Render the built-in demo corpus of gameplay videos + catalog."),
    "run": ("pipeline.run", "Build a dataset: search, download, clips, quality, shards, manifest, audit."),
    "finalize": ("pipeline.finalize", "Finish a detached run's output once its job is done: verdict, stale outputs, lease."),
    "audit": ("pipeline.audit.audit_command", "Re-render stats.json and report.html from a run's stored tables."),
    "doctor": ("pipeline.tools.doctor", "Check what a YouTube run needs: yt-dlp age, JS runtime, ffmpeg, cookies, output."),
    "plan": ("pipeline.tools.plan_command", "Estimate a catalog's Dataflow worker-hours, peak storage and cost."),
    "procgen-dataset": ("pipeline.tools.procgen_dataset", "Write the CoinRun case-study dataset (Procgen, random policy)."),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        message = unknown_flag_message(argv[0], COMMANDS).replace("argument", "command")
        return fail("python -m pipeline", message)
    if not argv or argv[0] in ("-h", "--help"):
        parser = listing("python -m pipeline", "Build the dataset and the tools around it.",
                         {name: text for name, (_, text) in COMMANDS.items()},
                         "Exit codes: 0 done, 1 failed, 2 usage error, 65/66/73/75 see `run --help`, 69 "
                         "finalize: job not finished, 130/143 interrupted.")
        parser.print_help(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]][0])
    return getattr(module, "cli_main", module.main)(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
