"""``python -m classifiers <command>``: ``train``, ``evaluate``, ``label-sheet``, ``features``.

Each command has a parser of its own (``schemas.cli.StrictParser``): a mistaken flag is one line naming it (with
the closest known flag) and exit status 2; ``python -m classifiers --help`` lists the commands. User errors -- a
label file with problems, a bad model directory, a ``--clips`` path without shards, too few labelled clips --
end with ``<prog>: error:`` and the message (one line per problem) on stderr and exit status 2; a traceback would
bury the line numbers the person needs.
"""

from __future__ import annotations

import importlib
import sys

from schemas import cli
from schemas.cli import USAGE, StrictParser, fail, unknown_flag_message

PROG = "python -m classifiers"
INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C (128 + SIGINT)
EXIT_CODES = """exit status:
  0    done
  1    evaluate --min-roc-auc: the held-out ROC-AUC is below the minimum (the report is written)
  2    a usage or input mistake, on stderr
  130  interrupted (Ctrl-C)"""

COMMANDS = {
    "train": ("classifiers.train", "Cross-validate and train a quality classifier; write a model directory."),
    "evaluate": ("classifiers.evaluate", "Score held-out labels with a model; write metrics + HTML report."),
    "label-sheet": ("classifiers.label_sheet", "Write an HTML page for hand-labelling a sample of clips."),
    "features": ("classifiers.__main__", "Compute the clip features of every clip into a Parquet/CSV file."),
}


def features_main(argv: list[str]) -> int:
    """Write one row per clip: clip_key, video_id, then every feature (for auditing and ad-hoc analysis)."""
    import pandas as pd

    from classifiers.clip_source import iter_clips
    from classifiers.features import FEATURE_NAMES, FEATURE_VERSION, clip_features

    parser = StrictParser(prog=f"{PROG} features", description=features_main.__doc__)
    parser.add_argument("--clips", required=True, help="pipeline output dir, shard glob, or brace pattern")
    parser.add_argument("--out", required=True, help="output file: .parquet or .csv")
    a = parser.parse_args(argv)
    problems: list = []
    rows = []
    for clip, frames in iter_clips(a.clips, problems):
        rows.append({"clip_key": clip.clip_key, "video_id": clip.video_id,
                     **dict(zip(FEATURE_NAMES, clip_features(frames).tolist(), strict=True))})
    df = pd.DataFrame(rows, columns=["clip_key", "video_id", *FEATURE_NAMES])
    df.attrs["feature_version"] = FEATURE_VERSION
    if a.out.endswith(".csv"):
        df.to_csv(a.out, index=False)
    else:
        df.to_parquet(a.out, index=False)
    for p in problems:
        print(f"features: skipped unreadable sample {p.key!r} in {p.shard}: {p.error}", file=sys.stderr)
    print(f"features: {len(df)} clips, feature version {FEATURE_VERSION} -> {a.out}", file=sys.stderr)
    return 0


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "fix your input", not "bug" (imported late: ``--help`` stays fast)."""
    from classifiers.artifact import ModelDirError
    from classifiers.dataset import LabelCoverageError
    from classifiers.labels import LabelFileError
    from schemas.shard_source import ShardSourceError
    return LabelFileError, ModelDirError, ShardSourceError, LabelCoverageError


def listing() -> StrictParser:
    """The top-level parser: only its ``--help`` is used, the listing of every command."""
    return cli.listing(PROG, "Train, evaluate and label the clip quality classifier.",
                       {name: text for name, (_, text) in COMMANDS.items()}, EXIT_CODES)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        listing().print_help(sys.stderr)
        return USAGE
    if argv[0] in ("-h", "--help"):
        listing().print_help()
        return 0
    if argv[0] not in COMMANDS:
        return fail(PROG, unknown_flag_message(argv[0], ["--help", *COMMANDS]).replace("argument", "command", 1))
    try:
        if argv[0] == "features":
            return features_main(argv[1:])
        return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:]) or 0
    except user_errors() as exc:
        print(f"{PROG} {argv[0]}: error: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print(f"interrupted ({argv[0]})", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
