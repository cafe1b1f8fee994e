"""Fig. 15 of the paper: agents played in the real CoinRun on held-out levels, per mode, k and seed.

Per distribution mode (easy, hard) and seed: the latent policy and the oracle are trained on that mode's expert
transitions (seeded), the latent policy is played through the latent -> action mapping fitted on k labelled
transitions for every k, and the oracle and a uniformly random agent are played as they are. Each agent plays
one episode of every held-out level (levels no expert episode came from); a level is solved when its episode
ends with Procgen's reward (the coin) within ``max_steps``. Results: % of levels solved, mean over seeds with a
95% confidence interval (Student t over the seeds), in ``results.json``, ``results.md`` and ``fig15.png``.

Agents sample their action from the policy's softmax (``sample=True``; argmax policies get stuck against walls
in CoinRun); the latent policy samples a latent code and plays its mapped action.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from modeling.bc.expert import level_stream, read_expert_json
from modeling.bc.label import read_labels
from modeling.bc.mapping import fit_mapping, sample_labelled
from modeling.bc.policy import NUM_REAL_ACTIONS, CNNPolicy, PolicyConfig, train_policy
from modeling.bc.transitions import read_episodes, stack_transitions
from modeling.metrics import confidence_interval
from schemas.figures import figure_png, subplots
from schemas.procgen import make_env

LAM, ORACLE, RANDOM = "lam", "oracle", "random"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    expert_dirs: tuple[tuple[str, str], ...]  # (mode, expert dataset directory) per distribution mode
    out: str  # results directory
    eval_levels: tuple[int, int] = (100_000, 100_099)  # held-out level seeds, inclusive (the paper: 100 levels)
    seeds: int = 5  # policy training / mapping / environment seeds
    ks: tuple[int, ...] = (0, 50, 200, 1000)  # labelled transitions for the latent -> action mapping
    max_steps: int = 1000  # steps per evaluation episode (CoinRun's own limit)
    sample: bool = True  # sample actions from the policy (else argmax)
    policy: PolicyConfig = PolicyConfig()


class PolicyAgent:
    """A trained policy, its outputs played through ``mapping`` (None: the outputs are real actions)."""

    def __init__(self, policy: CNNPolicy, mapping: np.ndarray | None, rng: np.random.Generator, sample: bool):
        self.policy, self.mapping, self.rng, self.sample = policy, mapping, rng, sample

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        logits = self.policy(torch.from_numpy(frames)).double()
        if self.sample:
            probs = torch.softmax(logits, 1).numpy()
            out = np.array([self.rng.choice(len(p), p=p / p.sum()) for p in probs])
        else:
            out = logits.argmax(1).numpy()
        return out if self.mapping is None else self.mapping[out]


class RandomAgent:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.rng.integers(NUM_REAL_ACTIONS, size=len(frames))


def play_levels(agent, mode: str, levels: tuple[int, int], seed: int, max_steps: int) -> np.ndarray:
    """One episode per level, all levels stepped together (one env each); solved (bool) per level."""
    stream = level_stream(mode, seed)
    envs = [make_env(stream, level) for level in range(levels[0], levels[1] + 1)]
    current = np.stack([env.observe()[1]["rgb"][0] for env in envs])
    previous = current.copy()
    solved = np.zeros(len(envs), bool)
    active = np.ones(len(envs), bool)
    for _ in range(max_steps):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        actions = agent(np.stack([previous[idx], current[idx]], 1))
        for i, action in zip(idx, actions, strict=True):
            envs[i].act(np.array([action]))
            reward, obs, first = envs[i].observe()
            if first[0]:
                active[i], solved[i] = False, reward[0] > 0
            else:
                previous[i], current[i] = current[i], obs["rgb"][0]
    return solved


def run_experiment(config: ExperimentConfig, log=print) -> dict:
    rows = []
    agreement = []  # how often the mapped LAM label equals the true action, on all expert transitions
    experts = {}
    for mode, expert_dir in config.expert_dirs:
        expert = read_expert_json(expert_dir)
        if expert["mode"] != mode:
            raise ValueError(f"{expert_dir} holds {expert['mode']} episodes, not {mode}")
        first, last = expert["levels"]
        if not (config.eval_levels[1] < first or config.eval_levels[0] > last):
            raise ValueError(f"evaluation levels {config.eval_levels} overlap the expert's levels {first}-{last}")
        labels = read_labels(expert_dir)
        data = stack_transitions(read_episodes(expert_dir), labels["labels"])
        num_latents = labels["num_latents"]
        experts[mode] = {"dir": str(expert_dir), "solved_share": expert["solved_share"],
                         "transitions": len(data.actions), "levels": expert["levels"]}
        for seed in range(config.seeds):
            started = time.perf_counter()

            def play(agent, name, k=None, mode=mode, seed=seed):
                solved = play_levels(agent, mode, config.eval_levels, seed, config.max_steps)
                rows.append({"mode": mode, "agent": name, "k": k, "seed": seed, "solved_pct": 100 * solved.mean()})

            latent = train_policy(data, dataclasses.replace(config.policy, target="latent", seed=seed),
                                  num_latents, log)
            for k in config.ks:
                rng = np.random.default_rng([seed, k])
                picked = sample_labelled(len(data.actions), k, rng)
                mapping = fit_mapping(data.latents[picked], data.actions[picked], num_latents)
                agreement.append({"mode": mode, "k": k, "seed": seed,
                                  "agreement": float((mapping[data.latents] == data.actions).mean())})
                play(PolicyAgent(latent, mapping, rng, config.sample), LAM, k)
            oracle = train_policy(data, dataclasses.replace(config.policy, target="action", seed=seed),
                                  NUM_REAL_ACTIONS, log)
            play(PolicyAgent(oracle, None, np.random.default_rng([seed, 1]), config.sample), ORACLE)
            play(RandomAgent(np.random.default_rng([seed, 2])), RANDOM)
            log(f"bc evaluate: {mode} seed {seed}: " + ", ".join(
                f"{r['agent']}{'' if r['k'] is None else ' k=' + str(r['k'])} {r['solved_pct']:.0f}%"
                for r in rows if r["mode"] == mode and r["seed"] == seed)
                + f" ({time.perf_counter() - started:.0f} s)")
    results = {"config": dataclasses.asdict(config), "experts": experts, "runs": rows,
               "label_agreement": agreement, "summary": summarise(rows, agreement)}
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown_table(results))
    plot(results, out / "fig15.png")
    return results


def summarise(rows: list[dict], agreement: list[dict]) -> list[dict]:
    summary = []
    for key in sorted({(r["mode"], r["agent"], r["k"]) for r in rows}, key=lambda t: (t[0], t[1], t[2] or 0)):
        mode, agent, k = key
        values = [r["solved_pct"] for r in rows if (r["mode"], r["agent"], r["k"]) == key]
        mean, half = confidence_interval(values)
        entry = {"mode": mode, "agent": agent, "k": k, "seeds": len(values), "solved_pct": mean, "ci95": half}
        if agent == LAM:
            entry["label_agreement"] = float(np.mean([a["agreement"] for a in agreement
                                                      if (a["mode"], a["k"]) == (mode, k)]))
        summary.append(entry)
    return summary


def markdown_table(results: dict) -> str:
    cfg = results["config"]
    lines = [f"Levels solved (%) on held-out levels {cfg['eval_levels'][0]}-{cfg['eval_levels'][1]}, mean ± 95% CI "
             f"over {cfg['seeds']} seeds, {cfg['max_steps']} steps per episode.", "",
             "| mode | agent | k labelled | levels solved (%) | mapped label = true action |",
             "|---|---|---|---|---|"]
    for mode, expert in results["experts"].items():
        lines.append(f"| {mode} | expert (planner, its own levels) | - | {100 * expert['solved_share']:.1f} | - |")
    for s in results["summary"]:
        agent = {LAM: "LAM policy", ORACLE: "oracle (true actions)", RANDOM: "random"}[s["agent"]]
        agree = f"{100 * s['label_agreement']:.1f}%" if "label_agreement" in s else "-"
        lines.append(f"| {s['mode']} | {agent} | {'-' if s['k'] is None else s['k']} | "
                     f"{s['solved_pct']:.1f} ± {s['ci95']:.1f} | {agree} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """Fig. 15's layout: % solved against k for the LAM policy, the oracle and random as bands, one panel per mode."""
    modes = list(results["experts"])
    fig, axes = subplots(1, len(modes), figsize=(4.5 * len(modes), 3.5), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        mine = [s for s in results["summary"] if s["mode"] == mode]
        lam = sorted((s for s in mine if s["agent"] == LAM), key=lambda s: s["k"])
        x = np.arange(len(lam))
        ax.errorbar(x, [s["solved_pct"] for s in lam], yerr=[s["ci95"] for s in lam], marker="o", capsize=3,
                    label="LAM policy")
        for agent, colour in ((ORACLE, "tab:green"), (RANDOM, "tab:grey")):
            for s in mine:
                if s["agent"] == agent:
                    ax.axhline(s["solved_pct"], color=colour, label=agent)
                    ax.axhspan(s["solved_pct"] - s["ci95"], s["solved_pct"] + s["ci95"], color=colour, alpha=0.2)
        ax.set_xticks(x, [str(s["k"]) for s in lam])
        ax.set_xlabel("labelled transitions k")
        ax.set_ylabel("levels solved (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"CoinRun {mode}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.write_bytes(figure_png(fig, dpi=100))
