"""Command line of the model stack: ``python -m modeling <command> ...`` (also installed as ``genie-modeling``).

    train tokenizer     --shards PATTERN --config NAME --out RUN [--set section.field=value ...]
    train lam           --shards PATTERN --config NAME --out RUN [--set ...]   the LAM alone (labels for bc)
    train lam-dynamics  --shards PATTERN --config NAME --tokenizer TOKENIZER_RUN --out RUN [--set ...]
    extract-tokens      --shards PATTERN --tokenizer RUN [--lam LAM_DYNAMICS_RUN] --out DIR
    train dynamics      --shards TOKEN_SHARDS --init LAM_DYNAMICS_RUN --out RUN [--set ...]
    params              [--config NAME]             parameter counts of the presets
    generate | play | evaluate ...                  (modeling.generate / play / evaluate)
    bc {expert,label,train,evaluate} ...            agents from latent actions (modeling.bc, the paper's Fig. 15)

Each command has a parser of its own (``schemas.cli.StrictParser``), so its errors and ``--help`` name it. Errors a
user can fix (a mistaken flag, no shards matched, clips or token shards that do not fit the config or tokenizer, a
run directory of the wrong kind) are one line on stderr and exit status 2, checked before ``train`` touches its run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from modeling.configs import PRESETS
from schemas import cli
from schemas.cli import USAGE, StrictParser, UsageError, fail, unknown_flag_message
from schemas.shard_source import ShardError

PROG = "python -m modeling"
INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C (128 + SIGINT)
EXIT_CODES = """exit status:
  0    done (also: a run that is already complete)
  2    a usage or input mistake: one line on stderr (train leaves no run directory behind)
  130  interrupted (Ctrl-C); train: rerun the same command to resume"""

# name: (module whose main(argv) runs it, None for the commands of this module; one-line description)
COMMANDS: dict[str, tuple[str | None, str]] = {
    "train": (None, "Train the tokenizer, the LAM alone, the LAM and dynamics model together, or dynamics alone."),
    "extract-tokens": (None, "Write token shards (and optionally latent actions) with a trained tokenizer."),
    "params": (None, "Print the parameter counts of the presets."),
    "generate": ("modeling.generate", "Roll a trained Genie out from a prompt and latent actions, to a file."),
    "play": ("modeling.play", "Play a trained Genie in the browser, one latent action per key press."),
    "evaluate": ("modeling.evaluate", "Measure how good and how controllable a trained Genie is on held-out "
                                      "shards."),
    "bc": ("modeling.bc.cli", "Train and evaluate agents from latent actions on CoinRun (the paper's Fig. 15)."),
}


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def listing() -> StrictParser:
    """The top-level parser: only its ``--help`` is used, the listing of every command."""
    return cli.listing(PROG, "The Genie model stack: train its models, then generate, play and evaluate.",
                       {name: text for name, (_, text) in COMMANDS.items()}, EXIT_CODES)


def train_parser() -> StrictParser:
    p = StrictParser(prog=f"{PROG} train", description=COMMANDS["train"][1], epilog=EXIT_CODES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["tokenizer", "lam", "lam-dynamics", "dynamics"],
                   help="lam = the LAM alone on pixels (what bc label needs); dynamics = dynamics-only on "
                        "token shards (extract-tokens --lam), from --init")
    p.add_argument("--shards", required=True, help="shard glob, directory, brace pattern or URL(s) ('::'-joined)")
    p.add_argument("--config", choices=sorted(PRESETS), help="preset (default tiny; an existing run keeps its own)")
    p.add_argument("--out", required=True, help="run directory (an existing one is resumed)")
    p.add_argument("--tokenizer", help="tokenizer run directory (lam-dynamics only)")
    p.add_argument("--init", help="lam-dynamics run to start from (dynamics only)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. train_tokenizer.max_steps=1000 (repeatable; the value "
                        "must fit the field's type)")
    p.add_argument("--until-step", type=int, help="stop at this step (schedule unchanged; resume later)")
    p.add_argument("--max-minutes", type=float,
                   help="stop (and checkpoint) once this many minutes of training steps have passed")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--num-workers", type=int, help="loader workers per rank (default: from the config)")
    return p


def extract_parser() -> StrictParser:
    p = StrictParser(prog=f"{PROG} extract-tokens", description=COMMANDS["extract-tokens"][1])
    p.add_argument("--shards", required=True, help="shard glob, directory, brace pattern or URL(s) ('::'-joined)")
    p.add_argument("--tokenizer", required=True, help="tokenizer run directory")
    p.add_argument("--out", required=True, help="output directory for token shards")
    p.add_argument("--lam", help="optional lam-dynamics run: also store its latent actions")
    p.add_argument("--batch-size", type=positive, default=8, help="clips per batch (default 8)")
    p.add_argument("--clips-per-shard", type=positive, default=1000, help="clips per token shard (default 1000)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    return p


def params_parser() -> StrictParser:
    p = StrictParser(prog=f"{PROG} params", description=COMMANDS["params"][1])
    p.add_argument("--config", action="append", choices=sorted(PRESETS), help="preset name (repeatable; default: all)")
    return p


def run_train(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    from modeling.configs import parse_overrides
    from modeling.train import TrainingInterrupted, train

    try:
        overrides = parse_overrides(args.overrides)
        saved = Path(args.out) / "config.json"
        if args.config and saved.is_file():
            from modeling.checkpoint import read_run_config

            name = read_run_config(args.out)[0].name
            if name != args.config:
                raise UsageError(f"{args.out} is a {name!r} run: its config.json is used as is, --config "
                                 f"{args.config} is not (use a new --out)")
        train(args.phase, args.shards, args.out, args.config or "tiny", overrides, tokenizer_run=args.tokenizer,
              until_step=args.until_step, device=args.device, num_workers=args.num_workers, init_run=args.init,
              max_wall_s=None if args.max_minutes is None else args.max_minutes * 60)
    except TrainingInterrupted as e:
        if e.is_main:
            print(e, file=sys.stderr)
        return INTERRUPTED
    except UsageError as e:
        return fail(f"{PROG} train", str(e))
    return 0


def run_extract(argv: list[str]) -> int:
    args = extract_parser().parse_args(argv)
    from modeling.token_shards import extract_tokens
    from schemas import shard_source

    shard_source.resolve(args.shards)  # a pattern matching nothing is reported before any model loads
    print(extract_tokens(args.shards, args.tokenizer, args.out, lam_run=args.lam, batch_size=args.batch_size,
                         clips_per_shard=args.clips_per_shard, device=args.device))
    return 0


def run_params(argv: list[str]) -> int:
    args = params_parser().parse_args(argv)
    from modeling.configs import get_config
    from modeling.train import describe_params

    for name in args.config or sorted(PRESETS):
        counts = describe_params(get_config(name))
        print(name, " ".join(f"{k}={v / 1e6:.2f}M" for k, v in counts.items()))
    return 0


LOCAL: dict[str, Callable[[list[str]], int]] = {"train": run_train, "extract-tokens": run_extract,
                                                 "params": run_params}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        listing().print_help(sys.stderr)
        return USAGE
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help"):
        listing().print_help()
        return 0
    if name not in COMMANDS:
        return fail(PROG, unknown_flag_message(name, ["--help", *COMMANDS]).replace("argument", "command", 1))
    module = COMMANDS[name][0]
    try:
        return (importlib.import_module(module).main if module else LOCAL[name])(rest) or 0
    except (FileNotFoundError, KeyError, ShardError, ValueError) as e:
        message = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        if "Original Traceback" in message:  # raised in a loader worker: keep the worker's own last line
            message = message.strip().splitlines()[-1]
        print(f"error: {message}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":
            print(f"interrupted ({name})", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
