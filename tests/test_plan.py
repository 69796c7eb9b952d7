import pytest

from common.config import load_config
from shards.manifest import read_content_manifest, read_style_manifest
from pipeline.plan import PlannedItem, make_plan
from pipeline.worker import method_batches


def _plan(small_manifests, seed=0, **overrides):
    cfg = load_config(None, [f"stylize.{k}={v}" for k, v in overrides.items()])
    content, style = small_manifests
    return make_plan(read_content_manifest(content), read_style_manifest(style), cfg, seed)


def _by_split(plan):
    out = {}
    for shard in plan.shards:
        out.setdefault(shard.split, []).extend(shard.groups)
    return out


def test_splits_and_disjointness(small_manifests):
    plan = _plan(small_manifests, test_fraction=0.34, train_methods="[colour,gram,histogram]",
                 held_out="whitening")
    splits = _by_split(plan)
    assert set(splits) == {"train", "test-colour", "test-whitening", "test-gram",
                           "test-histogram", "crops"}
    train_groups = {g.group for g in splits["train"]}
    test_groups = {g.group for g in splits["test-histogram"]}
    assert train_groups and test_groups and not train_groups & test_groups
    train_contents = {i.content_id for g in splits["train"] for i in g.items}
    test_contents = {i.content_id for g in splits["test-colour"] for i in g.items}
    assert not train_contents & test_contents
    # at most test_styles_per_group styles per held-out group; the same pairs in every test
    # split, one method each
    cfg = load_config()
    per_group = cfg.stylize.test_styles_per_group
    counts = [sum(g.group == name for g in splits["test-colour"]) for name in test_groups]
    assert counts == [min(per_group, 2)] * len(test_groups)  # the fixture's groups hold 2 styles
    pairs = {s: [(g.style_id, i.content_id) for g in splits[s] for i in g.items]
             for s in splits if s.startswith("test-")}
    assert len({tuple(p) for p in pairs.values()}) == 1
    assert {i.method for g in splits["test-gram"] for i in g.items} == {"gram"}
    assert {i.method for g in splits["train"] for i in g.items} <= {"colour", "gram", "histogram"}
    grid = cfg.stylize.crops_grid
    assert all(len(g.items) == grid * grid for g in splits["crops"])


def test_plan_is_deterministic_and_seeded(small_manifests):
    assert _plan(small_manifests).digest() == _plan(small_manifests).digest()
    assert _plan(small_manifests).digest() != _plan(small_manifests, seed=1).digest()


def test_shards_hold_at_most_groups_per_shard(small_manifests):
    plan = _plan(small_manifests, styles_per_shard=2)
    assert max(len(s.groups) for s in plan.shards) == 2
    assert [s.number for s in plan.shards if s.split == "train"] == list(range(
        sum(s.split == "train" for s in plan.shards)))


def test_strength_choices_are_drawn_per_stylization_and_shared_by_test_splits(small_manifests):
    plan = _plan(small_manifests, strength="[0.5,1.0]")
    splits = _by_split(plan)
    drawn = {i.params["strength"] for g in splits["train"] for i in g.items}
    assert drawn == {0.5, 1.0}
    # A style/content pair keeps its strength in every test split, so methods compare fairly.
    strengths = {s: [i.params["strength"] for g in splits[s] for i in g.items]
                 for s in splits if s.startswith("test-")}
    assert len({tuple(v) for v in strengths.values()}) == 1
    assert set(next(iter(strengths.values()))) == {0.5, 1.0}
    single = _by_split(_plan(small_manifests, strength=0.7))
    assert {i.params["strength"] for g in single["train"] for i in g.items} == {0.7}


def test_a_bad_strength_is_refused_with_its_key(small_manifests):
    for bad in ("1.5", "[]", "[0.5,high]"):
        with pytest.raises(ValueError, match="stylize.strength"):
            _plan(small_manifests, strength=bad)


def test_a_batch_holds_one_method_and_one_strength():
    items = tuple(PlannedItem(i, f"c{i}", "p", "", method, {"strength": strength}, i)
                  for i, (method, strength) in enumerate(
                      [("colour", 1.0), ("colour", 0.5), ("gram", 1.0), ("colour", 1.0),
                       ("colour", 0.5), ("colour", 1.0)]))
    batches = list(method_batches(items, batch_size=2))
    assert sorted(i.index for b in batches for i in b) == list(range(6))
    assert all(len({(i.method, i.params["strength"]) for i in b}) == 1 for b in batches)
    assert [len(b) for b in batches] == [2, 1, 2, 1]


def test_shortfalls_are_reported(small_manifests):
    content, style = small_manifests
    cfg = load_config(None, ["stylize.test_contents_per_style=50", "stylize.test_styles_per_group=3",
                             "stylize.test_fraction=0.34"])
    plan = make_plan(read_content_manifest(content), read_style_manifest(style), cfg, 0)
    test_contents = len({i.content_id for s in plan.shards if s.split.startswith("test-")
                         for g in s.groups for i in g.items})
    assert any(f"stylize.test_contents_per_style is 50 but only {test_contents} test contents" in w
               for w in plan.warnings)
    assert any("stylize.test_styles_per_group is 3 but 2 of 2 test groups hold fewer" in w
               for w in plan.warnings)
    assert any(line.startswith("train: ") and " styles, " in line for line in plan.describe())
