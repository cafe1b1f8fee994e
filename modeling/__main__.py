"""Command line of the model stack: ``python -m modeling <command> ...`` (also installed as ``genie-modeling``).

    train tokenizer     --shards PATTERN --config NAME --out RUN [--set section.field=value ...]
    train lam           --shards PATTERN --config NAME --out RUN [--set ...]   the LAM alone (labels for bc)
    train lam-dynamics  --shards PATTERN --config NAME --tokenizer TOKENIZER_RUN --out RUN [--set ...]
    extract-tokens      --shards PATTERN --tokenizer RUN [--lam LAM_DYNAMICS_RUN] --out DIR
    train dynamics      --shards TOKEN_SHARDS --init LAM_DYNAMICS_RUN --out RUN [--set ...]
    params              [--config NAME]             parameter counts of the presets
    generate | play | evaluate ...                  (modeling.generate / play / evaluate)
    bc {expert,label,train,evaluate} ...            agents from latent actions (modeling.bc, the paper's Fig. 15)

Errors a user can fix (no shards matched or named shards missing, clips that are not 160x90, token shards or
a LAM run made with another tokenizer, an unknown config key, a run directory of the wrong kind) are printed as
one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from modeling.configs import PRESETS, get_config, parse_overrides
from schemas.shard_source import ShardError

DISPATCHED = {"generate": "modeling.generate", "play": "modeling.play", "evaluate": "modeling.evaluate",
              "bc": "modeling.bc.cli"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modeling", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train the tokenizer, the LAM alone, or the LAM and dynamics together")
    train.add_argument("phase", choices=["tokenizer", "lam", "lam-dynamics", "dynamics"],
                       help="lam = the LAM alone on pixels (what bc label needs); dynamics = dynamics-only on "
                            "token shards (extract-tokens --lam), from --init")
    train.add_argument("--shards", required=True, help="shard glob, directory, brace pattern or URL(s) ('::'-joined)")
    train.add_argument("--config", default="tiny", help=f"preset: {', '.join(sorted(PRESETS))} (default tiny)")
    train.add_argument("--out", required=True, help="run directory (an existing one is resumed)")
    train.add_argument("--tokenizer", help="tokenizer run directory (lam-dynamics only)")
    train.add_argument("--init", help="lam-dynamics run to start from (dynamics only)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="override a config field, e.g. train_tokenizer.max_steps=1000 (repeatable)")
    train.add_argument("--until-step", type=int, help="stop at this step (schedule unchanged; resume later)")
    train.add_argument("--max-minutes", type=float,
                       help="stop (and checkpoint) once this many minutes of training steps have passed")
    train.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    train.add_argument("--num-workers", type=int, help="loader workers per rank (default: from the config)")

    extract = sub.add_parser("extract-tokens", help="write token shards with a trained tokenizer")
    extract.add_argument("--shards", required=True)
    extract.add_argument("--tokenizer", required=True, help="tokenizer run directory")
    extract.add_argument("--out", required=True, help="output directory for token shards")
    extract.add_argument("--lam", help="optional lam-dynamics run: also store its latent actions")
    extract.add_argument("--batch-size", type=int, default=8)
    extract.add_argument("--clips-per-shard", type=int, default=1000)
    extract.add_argument("--device", help="cpu or cuda (default: cuda when available)")

    params = sub.add_parser("params", help="print parameter counts of presets")
    params.add_argument("--config", action="append", help="preset name (default: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DISPATCHED:
        return importlib.import_module(DISPATCHED[argv[0]]).main(argv[1:]) or 0
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            from modeling.train import train

            train(args.phase, args.shards, args.out, args.config, parse_overrides(args.overrides),
                  tokenizer_run=args.tokenizer, until_step=args.until_step, device=args.device,
                  num_workers=args.num_workers, init_run=args.init,
                  max_wall_s=None if args.max_minutes is None else args.max_minutes * 60)
        elif args.command == "extract-tokens":
            from modeling.token_shards import extract_tokens

            summary = extract_tokens(args.shards, args.tokenizer, args.out, lam_run=args.lam,
                                     batch_size=args.batch_size, clips_per_shard=args.clips_per_shard,
                                     device=args.device)
            print(summary)
        elif args.command == "params":
            from modeling.train import describe_params

            for name in args.config or sorted(PRESETS):
                counts = describe_params(get_config(name))
                print(name, " ".join(f"{k}={v / 1e6:.2f}M" for k, v in counts.items()))
    except (FileNotFoundError, KeyError, ShardError, ValueError) as e:
        message = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        if "Original Traceback" in message:  # raised in a loader worker: keep the worker's own last line
            message = message.strip().splitlines()[-1]
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
