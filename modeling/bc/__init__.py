"""Agents from latent actions: the Genie paper's CoinRun behaviour-cloning experiment (Fig. 15).

Genie (Bruce et al. 2024), Section 3.5: a policy trained only on expert videos labelled with the LAM's latent
actions, mapped to real actions with a few labelled transitions, is compared with an oracle behaviour-cloning
policy trained on the true actions, and with a random agent, by the share of held-out levels it solves.

Modules, in the order the experiment runs them (``python -m modeling bc --help``):

- ``expert``: a look-ahead CoinRun planner (Procgen state save/restore) and its episodes as clip shards.
- ``label``: the trained LAM's latent action for every expert transition (frames only, no true actions).
- ``transitions``: expert shards (+ labels) as (previous frame, frame, target) training arrays.
- ``policy``: the small CNN policy and its training (on latent labels, or on true actions: the oracle).
- ``mapping``: latent -> real action, fitted on k labelled transitions.
- ``evaluate``: agents played in the real environment on held-out levels; table, JSON and Fig. 15-style plot.
"""
