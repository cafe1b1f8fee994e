"""Threshold picking, the binary report and the JSON writer, against hand-computed examples and sklearn."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from classifiers.metrics import DecisionRule, binary_report, pick_threshold, to_json


def strict_loads(text: str):
    """``json.loads`` that refuses NaN/Infinity, as any strict JSON reader would."""
    def refuse(name):
        raise ValueError(f"invalid JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


# precision when keeping scores >= cut: .1 -> 3/6, .2 -> 3/5, .3 -> 3/4, .4 -> 2/3, .5 -> 2/2, .6 -> 1/1
Y1 = np.array([0, 0, 1, 0, 1, 1])
S1 = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


@pytest.mark.parametrize(("target", "expected"), [(0.5, 0.1), (0.75, 0.3), (0.7, 0.3), (0.9, 0.5), (1.0, 0.5)])
def test_pick_threshold_is_the_lowest_cut_reaching_the_target(target, expected):
    # 0.7: precision is not monotone in the cut (0.3 gives 0.75, 0.4 only 0.67); the lowest cut still wins
    assert pick_threshold(Y1, S1, target) == (pytest.approx(expected), True)


def test_pick_threshold_minimum_excludes_lower_cuts():
    assert pick_threshold(Y1, S1, 0.7, minimum=0.35) == (pytest.approx(0.5), True)  # 0.4 gives only 2/3
    assert pick_threshold(Y1, S1, 0.7, minimum=0.3) == (pytest.approx(0.3), True)  # the minimum is allowed


def test_pick_threshold_falls_back_to_best_f1_when_unreachable():
    # cuts .1: P 2/4 R 1 (F1 .667); .2: P 1/3 R .5 (.4); .3: P 1/2 R .5 (.5); .4: P 0 (0)
    y, s = np.array([1, 0, 1, 0]), np.array([0.1, 0.2, 0.3, 0.4])
    assert pick_threshold(y, s, 0.9) == (pytest.approx(0.1), False)
    assert pick_threshold(y, s, 0.9, minimum=0.25) == (pytest.approx(0.3), False)
    assert pick_threshold(y, s, 0.9, minimum=0.7) == (0.7, False)  # no score reaches the minimum
    assert pick_threshold(np.ones(3), s[:3], 0.9) == (0.5, False)  # one class: nothing to pick from


@pytest.mark.parametrize(("target", "bad_on_top"), [(0.6, False), (0.8, False), (0.97, False), (1.0, True)])
def test_pick_threshold_matches_a_brute_force_search_with_sklearn(target, bad_on_top):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    s = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.2, 300), 0, 1), 2)  # rounded: many ties
    if bad_on_top:  # every cut keeps the top clip, so precision 1 is out of reach: the best-F1 fallback
        y[np.argmax(s)] = 0
    cuts = np.unique(s)
    precisions = [precision_score(y, s >= c, zero_division=0) for c in cuts]
    threshold, reached = pick_threshold(y, s, target)
    ok = [c for c, p in zip(cuts, precisions, strict=True) if p >= target]
    if ok:
        assert reached and threshold == pytest.approx(ok[0])
    else:
        f1 = [f1_score(y, s >= c) for c in cuts]
        assert bad_on_top and not reached and threshold == pytest.approx(cuts[int(np.argmax(f1))])
    assert precision_score(y, s >= threshold) >= target or not reached


# Four videos; the clip rule and the video rule disagree about which cut reaches precision 0.81.
VIDEOS = ["A"] * 8 + ["B"] * 2 + ["C"] * 2 + ["D"] * 2
TARGETS = np.array([1] * 8 + [0, 0] + [1, 1] + [0, 0])
SCORES = np.array([0.9] * 8 + [0.8, 0.8] + [0.75, 0.1] + [0.1, 0.1])  # video means .9, .8, .425, .1


def test_video_rule_picks_its_threshold_on_video_mean_scores():
    # clip rule: cut .75 keeps A's 8, B's 2 and C's .75 clip: 9/11 = .818 >= .81
    assert pick_threshold(TARGETS, SCORES, 0.81) == (pytest.approx(0.75), True)
    # ...but the video rule at that cut keeps videos A and B: 8/10 = .8, short of the target it claimed
    stale = DecisionRule("video").keep(SCORES, VIDEOS, 0.75)
    assert binary_report(TARGETS, SCORES, 0.75, stale)["precision"] == pytest.approx(0.8)
    # on the video means the lowest cut reaching .81 is C's .425: A, B and C kept, 10/12 = .833
    rule = DecisionRule("video")
    threshold, reached = rule.pick_threshold(TARGETS, SCORES, VIDEOS, 0.81)
    assert (threshold, reached) == (pytest.approx(0.425), True)
    keep = rule.keep(SCORES, VIDEOS, threshold)
    assert keep.tolist() == [True] * 12 + [False] * 2
    assert binary_report(TARGETS, SCORES, threshold, keep)["precision"] == pytest.approx(10 / 12)


@pytest.mark.parametrize(("margin", "cut", "kept"), [(0.1, 0.425, 12), (0.5, 0.9, 8)])
def test_video_rule_threshold_leaves_room_for_the_margin(margin, cut, kept):
    # margin .5: cuts below .5 are out of reach; .8 gives 8/10, so the lowest reaching .81 is .9 (8/8)
    rule = DecisionRule("video", margin)
    threshold, reached = rule.pick_threshold(TARGETS, SCORES, VIDEOS, 0.81)
    assert reached and threshold == pytest.approx(cut - margin) and threshold >= 0
    assert rule.keep(SCORES, VIDEOS, threshold).sum() == kept  # float rounding did not lift the cut


def test_binary_report_hand_example():
    y = np.array([1, 1, 0, 0, 1])
    s = np.array([0.9, 0.4, 0.6, 0.2, 0.8])
    r = binary_report(y, s, 0.5)  # kept: .9 .6 .8 -> tp 2, fp 1, fn 1 (.4), tn 1 (.2)
    assert r["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert (r["n"], r["n_good"], r["n_bad"]) == (5, 3, 2)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3) and r["kept_frac"] == pytest.approx(0.6)
    assert r["roc_auc"] == pytest.approx(5 / 6)  # 5 of the 6 (good, bad) pairs ranked right; .4 < .6
    assert r["pr_auc"] == pytest.approx((1 / 1 + 2 / 2 + 3 / 4) / 3)  # precision at each good clip's rank


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_report_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    s = np.clip(0.25 * y + rng.random(200) * 0.75, 0, 1)
    keep = rng.random(200) < 0.4
    for r, pred in ((binary_report(y, s, 0.5), s >= 0.5), (binary_report(y, s, 0.5, keep), keep)):
        tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
        assert r["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        assert r["precision"] == pytest.approx(precision_score(y, pred))
        assert r["recall"] == pytest.approx(recall_score(y, pred))
        assert r["f1"] == pytest.approx(f1_score(y, pred))
        assert r["kept_frac"] == pytest.approx(pred.mean())
        assert r["roc_auc"] == pytest.approx(roc_auc_score(y, s))  # ranking metrics ignore the decision
        assert r["pr_auc"] == pytest.approx(average_precision_score(y, s))


def test_undefined_metrics_are_nan_in_memory_and_null_in_json():
    r = binary_report(np.array([1, 1, 1]), np.array([0.2, 0.3, 0.4]), 0.5)  # one class, nothing kept
    assert math.isnan(r["roc_auc"]) and math.isnan(r["pr_auc"]) and math.isnan(r["precision"])
    with pytest.raises(ValueError):
        json.dumps(r, allow_nan=False)
    back = strict_loads(to_json(r))
    assert back["roc_auc"] is None and back["pr_auc"] is None and back["precision"] is None
    assert back["recall"] == 0.0 and back["confusion"] == {"tn": 0, "fp": 0, "fn": 3, "tp": 0}


def test_to_json_converts_numpy_values():
    value = {"a": float("nan"), "b": [np.float32("inf"), np.int64(3)], "c": np.array([1.5, np.nan]),
             "d": (np.bool_(True), "x")}
    assert strict_loads(to_json(value)) == {"a": None, "b": [None, 3], "c": [1.5, None], "d": [True, "x"]}
