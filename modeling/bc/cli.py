"""``python -m modeling bc {expert,label,train,evaluate}``: the paper's Fig. 15 on CoinRun (see ``modeling.bc``).

    bc expert   OUT --mode easy --levels 0-499        expert episodes -> OUT/shards, OUT/expert.json
    bc label    --expert OUT --lam RUN                the LAM's latent labels -> OUT/labels.json
    bc train    --expert OUT --target latent --out P  one policy (latent labels or true actions)
    bc evaluate --expert easy=OUT_E --expert hard=OUT_H --out RESULTS    the whole comparison, table and plot
"""

from __future__ import annotations

import argparse
import sys

from modeling.bc.expert import ExpertConfig
from modeling.bc.policy import TARGETS, PolicyConfig
from schemas.cli import StrictParser
from schemas.procgen import level_range

MODES = ("easy", "hard")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _mode_dir(text: str) -> tuple[str, str]:
    mode, sep, path = text.partition("=")
    if not sep or mode not in MODES or not path:
        raise argparse.ArgumentTypeError(f"expected MODE=DIR with MODE in {MODES}, got {text!r}")
    return mode, path


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(k < 0 for k in ks):
        raise argparse.ArgumentTypeError(f"k must be >= 0, got {text!r}")
    return ks


def _add_policy_args(parser: argparse.ArgumentParser) -> None:
    d = PolicyConfig()
    parser.add_argument("--epochs", type=_positive, default=d.epochs, help=f"passes over the data ({d.epochs})")
    parser.add_argument("--batch-size", type=_positive, default=d.batch_size, help=f"({d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate ({d.lr})")
    parser.add_argument("--channels", type=_positive, default=d.channels, help=f"CNN width ({d.channels})")


def _policy_config(args: argparse.Namespace, target: str = "latent", seed: int = 0) -> PolicyConfig:
    return PolicyConfig(target=target, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        channels=args.channels, seed=seed)


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(prog="python -m modeling bc", formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="Train and evaluate agents from latent actions on CoinRun: the paper's Fig. 15 "
                                      "(see modeling.bc).",
                          epilog="\n".join(__doc__.split("\n")[2:]))
    sub = parser.add_subparsers(dest="command", required=True)
    d = ExpertConfig()

    expert = sub.add_parser("expert", help="play the look-ahead expert and write its episodes as clip shards")
    expert.add_argument("out", help="output directory (shards/ and expert.json)")
    expert.add_argument("--mode", choices=MODES, default="easy", help="Procgen distribution mode (easy)")
    expert.add_argument("--levels", type=level_range, default=(0, 499), help="level seeds A-B, inclusive (0-499)")
    expert.add_argument("--seed", type=int, default=0, help="seeds Procgen and the planner's rollouts (0)")
    expert.add_argument("--hold", type=_positive, default=d.hold, help=f"steps each action is held ({d.hold})")
    expert.add_argument("--depth", type=_positive, default=d.depth, help=f"held actions per rollout ({d.depth})")
    expert.add_argument("--rollouts", type=_positive, default=d.rollouts,
                        help=f"rollouts per candidate ({d.rollouts})")
    expert.add_argument("--max-steps", type=_positive, default=d.max_steps, help=f"steps per episode ({d.max_steps})")
    expert.add_argument("--levels-per-shard", type=_positive, default=50, help="(50)")

    label = sub.add_parser("label", help="label expert episodes with a trained LAM's latent actions")
    label.add_argument("--expert", required=True, help="expert dataset directory (bc expert)")
    label.add_argument("--lam", "--genie", dest="lam", required=True,
                       help="run whose LAM labels the frames: a lam run (modeling train lam) or a lam-dynamics run")
    label.add_argument("--device", default="cpu")

    train = sub.add_parser("train", help="train one policy: on latent labels, or on true actions (the oracle)")
    train.add_argument("--expert", required=True, help="expert dataset directory (labelled for --target latent)")
    train.add_argument("--target", choices=TARGETS, default="latent", help="(latent)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, help="policy directory (policy.pt, policy.json)")
    _add_policy_args(train)

    evaluate = sub.add_parser("evaluate", help="train, map and play every agent on held-out levels: table + plot")
    evaluate.add_argument("--expert", type=_mode_dir, action="append", required=True, metavar="MODE=DIR",
                          help="a labelled expert dataset per mode, e.g. easy=runs/bc/expert-easy (repeatable)")
    evaluate.add_argument("--out", required=True, help="results directory (results.json, results.md, fig15.png)")
    evaluate.add_argument("--eval-levels", type=level_range, default=(100_000, 100_099),
                          help="held-out level seeds C-D (100000-100099: 100 levels)")
    evaluate.add_argument("--seeds", type=_positive, default=5, help="seeds (5)")
    evaluate.add_argument("--ks", type=_ks, default=(0, 50, 200, 1000),
                          help="labelled transitions for the mapping (0,50,200,1000; 0 = identity mapping)")
    evaluate.add_argument("--max-steps", type=_positive, default=1000, help="steps per episode (1000)")
    evaluate.add_argument("--argmax", action="store_true", help="play the most likely action instead of sampling")
    _add_policy_args(evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "expert":
            from modeling.bc.expert import write_expert_dataset

            config = ExpertConfig(hold=args.hold, depth=args.depth, rollouts=args.rollouts, max_steps=args.max_steps)
            summary = write_expert_dataset(args.out, args.mode, args.levels, config, args.seed,
                                           args.levels_per_shard)
            print(f"bc expert: {args.mode}: solved {100 * summary['solved_share']:.1f}% of "
                  f"{len(summary['per_level'])} levels, {summary['transitions']} transitions -> {args.out}")
        elif args.command == "label":
            from modeling.bc.label import label_episodes

            doc = label_episodes(args.expert, args.lam, args.device)
            print(f"bc label: {sum(len(v) for v in doc['labels'].values())} transitions of {len(doc['labels'])} "
                  f"episodes labelled with {doc['num_latents']} latent actions")
        elif args.command == "train":
            from modeling.bc.label import read_labels
            from modeling.bc.policy import NUM_REAL_ACTIONS, save_policy, train_policy
            from modeling.bc.transitions import read_episodes, stack_transitions

            labels = read_labels(args.expert) if args.target == "latent" else None
            data = stack_transitions(read_episodes(args.expert), labels and labels["labels"])
            outputs = labels["num_latents"] if labels else NUM_REAL_ACTIONS
            config = _policy_config(args, args.target, args.seed)
            save_policy(train_policy(data, config, outputs), config, args.out)
        elif args.command == "evaluate":
            from modeling.bc.evaluate import ExperimentConfig, markdown_table, run_experiment

            config = ExperimentConfig(expert_dirs=tuple(args.expert), out=args.out, eval_levels=args.eval_levels,
                                      seeds=args.seeds, ks=args.ks, max_steps=args.max_steps,
                                      sample=not args.argmax, policy=_policy_config(args))
            print(markdown_table(run_experiment(config)), end="")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

