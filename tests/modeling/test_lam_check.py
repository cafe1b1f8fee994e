"""The action-necessity check (modeling/lam_check.py): the decoder's PSNR with the inferred, a constant and the
true action's code; no side effects on the LAM; the trainer's hook writes lam_check.jsonl and warns on collapse."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from modeling import lam_check
from modeling.__main__ import main
from modeling.lam import LatentActionModel
from tests.modeling.test_lam_drawing import SMALL
from tests.modeling_helpers import write_tiny_shards

torch.set_num_threads(1)


def moving_squares(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 4, 3, 32, 32) videos of a 4x4 square moving 3 px left (action 0) or right (action 1) per frame."""
    video, actions = torch.zeros(n, 4, 3, 32, 32), torch.randint(0, 2, (n, 4), generator=gen)
    for i in range(n):
        y, x = torch.randint(4, 24, (2,), generator=gen).tolist()
        for t in range(4):
            video[i, t, :, y:y + 4, x:x + 4] = 1.0
            x = min(max(x + (-3 if actions[i, t] == 0 else 3), 0), 28)
    return video, actions


def test_an_untrained_lam_gains_nothing_from_its_code_and_the_check_changes_nothing():
    torch.manual_seed(0)
    lam = LatentActionModel(SMALL).train()
    video, actions = moving_squares(4, torch.Generator().manual_seed(0))
    before = copy.deepcopy(lam.state_dict())
    row = lam_check.action_necessity(lam, video, actions)
    assert lam.training
    for k, v in lam.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert abs(row["gap_db"]) < 0.05 and abs(row["true_gap_db"]) < 0.05  # a copy of x_t, whatever the code
    assert set(row) >= {"psnr_inferred", "psnr_constant", "psnr_continuous", "psnr_true", "codes_used"}
    assert "psnr_true" not in lam_check.action_necessity(lam, video, torch.full_like(actions, -1))


def test_a_decoder_trained_on_the_true_action_shows_a_true_action_gap():
    """The decoder learns the moves from codes 0 / 1 given by the true action: its true-action PSNR is far above
    any constant code's; the (untrained) encoder's codes are not the action, so the inferred gap stays small."""
    torch.manual_seed(0)
    lam = LatentActionModel(SMALL)
    optimizer = torch.optim.Adam(lam.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(100):
        video, actions = moving_squares(8, gen)
        codes = lam.vq.codes().detach()
        loss = F.mse_loss(lam.decode(video[:, :-1], codes[actions[:, :-1]]), video[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    row = lam_check.action_necessity(lam, *moving_squares(16, torch.Generator().manual_seed(2)))
    assert row["true_gap_db"] > 3.0 and row["true_gap_db"] > row["gap_db"] + 2.0


def test_the_hook_runs_every_n_steps_and_warns_when_the_gap_stays_small(tmp_path):
    torch.manual_seed(0)
    lam = LatentActionModel(SMALL)
    lam.cfg.check_every = 5
    video, actions = moving_squares(2, torch.Generator().manual_seed(0))
    logged: list[str] = []
    hook = lambda step: lam_check.after_step(SimpleNamespace(lam=lam), {"video": video},  # noqa: E731
                                             {"actions": actions}, step, tmp_path, logged.append)
    assert hook(3) is None and hook(5) is not None
    assert not any(line.startswith("warning") for line in logged)
    hook(10)
    assert logged[-1].startswith("warning: the LAM's code is worth")
    rows = [json.loads(line) for line in (tmp_path / "lam_check.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10] and "true_gap_db" in rows[0]
    assert lam_check.after_step(SimpleNamespace(), {}, {}, 10, tmp_path) is None  # no LAM: nothing


def test_train_lam_writes_the_check(tmp_path):
    write_tiny_shards(tmp_path / "shards", n_clips=2, frames=16)
    run = tmp_path / "lam"
    assert main(["train", "lam", "--shards", str(tmp_path / "shards"), "--config", "tiny", "--out", str(run),
                 "--set", "train_lam_dynamics.max_steps=4", "--set", "lam.check_every=2"]) == 0
    rows = [json.loads(line) for line in (run / "lam_check.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and "psnr_true" in rows[0]
