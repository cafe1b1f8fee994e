"""The local run's search plan: the search stage's decisions made in one streamed pass, cut into slices."""

from __future__ import annotations

import json

from pipeline.local import search_plan
from pipeline.search import SearchConfig, search_candidates
from pipeline.sources import CatalogSource, Source, search_failure
from schemas import CandidateVideo, Outcome, reasons
from tests.pipeline.test_search import catalog, sources_for  # noqa: F401 - the fixture, the sources


def _slices(out, plan):
    return [(list(search_plan.read_slice(search_plan.slice_dir(str(out), s.index), CandidateVideo)),
             list(search_plan.read_slice(search_plan.slice_dir(str(out), s.index), Outcome)))
            for s in plan.slices]


def test_the_plan_decides_as_the_search_stage(catalog, tmp_path):  # noqa: F811
    """Every candidate and every outcome, field for field (details included), as the stage's plain form,
    which ``test_search`` ties to the Beam stage; cut into slices in source order."""
    rules = SearchConfig(catalogs=(str(catalog),)).rules()
    kept, outcomes = search_candidates(sources_for(catalog), rules)
    for slice_outcomes in (1, 40, 10_000):
        out = tmp_path / f"out{slice_outcomes}"
        plan = search_plan.make_plan(str(out), sources_for(catalog), rules, slice_outcomes)
        slices = _slices(out, plan)
        assert [c.to_row() for s, _ in slices for c in s] == [c.to_row() for c in kept]
        assert (sorted(json.dumps(o.to_row(), sort_keys=True) for _, s in slices for o in s)
                == sorted(json.dumps(o.to_row(), sort_keys=True) for o in outcomes))
        assert (plan.candidates, plan.search_outcomes) == (len(kept), len(outcomes))
        assert [(s.candidates, s.search_outcomes) for s in plan.slices] == [(len(c), len(o)) for c, o in slices]
        assert search_plan.read_plan(str(out)) == plan
    assert len(search_plan.read_plan(str(tmp_path / "out1")).slices) == len(kept) + len(outcomes)
    assert len(search_plan.read_plan(str(tmp_path / "out10000")).slices) == 1


def test_slices_close_on_the_outcomes_their_durations_promise(tmp_path):
    """A 160 s video promises 11 outcomes (itself and ten clips), one without a duration 1 + 1200 / 16; a
    dropped row 1. Every row lands in exactly one slice, in order."""
    rows = [{"id": f"v{i:03d}", "url": f"https://example.com/{i}", "title": "Mario speedrun", "duration_s": 160}
            for i in range(20)]
    rows[7]["duration_s"] = None
    rows[9]["title"] = "Mario unboxing"  # dropped by the default keywords' exclude list
    path = tmp_path / "catalog.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = search_plan.make_plan(str(tmp_path / "out"), [CatalogSource([str(path)])], SearchConfig().rules(), 50)
    assert [s.estimated_outcomes for s in plan.slices] == [55, 11 + 11 + 76, 11 + 1 + 44, 55, 11]
    slices = _slices(tmp_path / "out", plan)
    ids = [c.video_id for s, _ in slices for c in s] + [o.item_id for _, s in slices for o in s]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    assert [c.video_id for c in slices[0][0]] == ["v000", "v001", "v002", "v003", "v004"]


def test_nothing_to_search_is_one_empty_slice(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    plan = search_plan.make_plan(str(tmp_path / "out"), [CatalogSource([str(path)])], SearchConfig().rules())
    assert [(s.candidates, s.search_outcomes) for s in plan.slices] == [(0, 0)]
    assert _slices(tmp_path / "out", plan) == [([], [])]


def test_the_plan_reports_its_progress(catalog, tmp_path):  # noqa: F811
    """The launcher's plan pass counts every item it read, so the progress line moves before the first job."""
    from pipeline.runtime import progress

    tally = tmp_path / "progress"
    tally.mkdir()
    plan = search_plan.make_plan(str(tmp_path / "out"), sources_for(catalog), SearchConfig().rules(),
                                 progress_dir=str(tally))
    counts = progress.read_totals(str(tally))
    assert counts[progress.PLANNED] == plan.candidates + plan.search_outcomes == 17
    assert progress.progress_line(counts, 2.0, 17).startswith("planning 17/17 rows |")


class _Queries(Source):
    """Two search tasks: one answers, one was deferred (the site's breaker was open)."""

    name = "queries"

    def tasks(self):
        return ["answers", "blocked"]

    def read(self, task):
        if task == "blocked":
            yield search_failure(f"queries:{task}", reasons.DEFERRED, "breaker open for youtube: 3 bot checks")
            return
        yield CandidateVideo(video_id="q1", source=self.name, url="https://example.com/q1",
                             title="Mario speedrun", duration_s=60)


def test_a_plan_with_a_deferred_search_is_made_again_on_a_rerun(tmp_path):
    """A rerun reuses a plan (no source is searched again) unless a search of it was deferred."""
    out = str(tmp_path / "out")
    plan = search_plan.make_plan(out, [_Queries()], SearchConfig().rules())
    assert (plan.deferred_searches, plan.candidates, plan.search_outcomes) == (1, 1, 1)
    assert search_plan.read_plan(out) is None
    clean = search_plan.make_plan(out, [CatalogSource([])], SearchConfig().rules())
    assert clean.deferred_searches == 0 and search_plan.read_plan(out) == clean
