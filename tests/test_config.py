from pathlib import Path

import pytest
import yaml

from common.config import (DEFAULT_CONFIG, ConfigError, config_for_shards, load_config, load_file,
                           save_config)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_default_config_loads_and_overrides_take_yaml_types():
    cfg = load_config(None, ["train.steps=7", "stylize.train_methods=[colour,gram]",
                             "data.content_manifest=null", "train.lr=0.5"])
    assert cfg.train.steps == 7
    assert cfg.stylize.train_methods == ["colour", "gram"]
    assert cfg.data.content_manifest is None
    assert cfg.train.lr == 0.5


def test_typo_in_override_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"train\.stpes.*did you mean 'steps'"):
        load_config(None, ["train.stpes=3"])


def test_override_without_equals_sign_is_refused():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["train.steps"])


def test_child_config_inherits_and_typo_in_file_names_file(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"inherit: {CONFIGS / 'tiny.yaml'}\ntrain:\n  steps: 11\n")
    assert load_config(child).train.steps == 11
    assert load_config(child).train.lr == load_config().train.lr
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"inherit: {CONFIGS / 'tiny.yaml'}\ntrian:\n  steps: 11\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'trian'.*did you mean 'train'"):
        load_config(bad)


def test_method_options_are_an_open_section():
    cfg = load_config(None, ["stylize.methods.adain.alpha=0.5"])
    assert cfg.stylize.methods["adain"] == {"alpha": 0.5}


def test_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["seed=5"])
    path = save_config(cfg, tmp_path / "run")
    assert yaml.safe_load(path.read_text()) == cfg.model_dump()
    assert load_config(path) == cfg   # the saved config loads as the same typed config


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_resolves(name):
    from common.schema import Config
    assert isinstance(load_config(CONFIGS / name), Config)


def test_a_run_on_shards_takes_their_config_and_refuses_a_contradiction(tmp_path):
    shards = tmp_path / "shards"
    save_config(load_config(None, ["stylize.image_size=224", "seed=3"]), shards)
    cfg = config_for_shards(None, ["train.steps=2"], shards)
    assert cfg.stylize.image_size == 224 and cfg.seed == 3 and cfg.train.steps == 2
    # How stage 1 ran (Ray resources) may differ; what it made may not.
    assert config_for_shards(None, ["stylize.ray.num_actors=7"], shards).stylize.ray.num_actors == 7
    with pytest.raises(ConfigError, match=r"seed is 0 here but the shards were made with 3"):
        config_for_shards(DEFAULT_CONFIG, [], shards)
    with pytest.raises(ConfigError, match="no --config given"):
        config_for_shards(None, [], tmp_path / "elsewhere")


def test_inherit_and_override_errors_name_their_source(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("inherit: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"child.yaml: inherit: 'missing.yaml' .*not found"):
        load_config(child)
    with pytest.raises(ConfigError, match=r"override 'train.steps=\[1,': the value is not valid YAML"):
        load_config(None, ["train.steps=[1,"])


@pytest.mark.parametrize("override, message", [
    ("stylize.image_size=abc", r"override 'stylize.image_size=abc': stylize.image_size = 'abc': "
                               r"Input should be a valid integer"),
    ("stylize.ray.batch_size=0", r"stylize.ray.batch_size = 0: Input should be greater than 0"),
    ("stylize.crops_grid=0", r"stylize.crops_grid = 0: Input should be greater than 0"),
    ("stylize.styles_per_shard=-3", r"stylize.styles_per_shard = -3: .*greater than 0"),
    ("train.steps=1.5", r"train.steps = 1.5: Input should be a valid integer"),
    ("train.lr='0.001'", r"train.lr = '0.001': Input should be a valid number"),
    ("train.augment=1", r"train.augment = 1: Input should be a valid boolean"),
    ("train.mode=nts", r"train.mode = 'nts': Input should be 'nst' or 'no_nst'"),
    ("world=[1,2]", r"world = \[1, 2\]: Input should be a valid dictionary"),
    ("stylize.strength=[0.5,2]", r"stylize.strength"),
    ("stylize.test_fraction=1", r"stylize.test_fraction = 1: Input should be less than 1"),
    ("stylize.held_out=magenta", r"held_out 'magenta' is also in train_methods"),
    ("stylize.train_methods=[magenta,cast]", r"\['cast'\] named in train_methods/held_out but not configured"),
    ("train.model.vit.enabled=false", None),
    ("data.content_manifest=a.parquet", r"give both content_manifest and style_manifest"),
    ("demo.run=[nst,nope]", r"run names \['nope'\], not in variants"),
    ("search.index=ivf", r"search.index = 'ivf'"),
    ("embed.extensions=[jpg]", r"embed.extensions.0 = 'jpg'"),
])
def test_schema_names_key_value_and_source(override, message):
    if message is None:   # a valid change: one branch off is allowed, all off is not
        load_config(None, [override])
        with pytest.raises(ConfigError, match="enable at least one branch"):
            load_config(None, [override, "train.model.vgg.enabled=false",
                               "train.model.style_net.enabled=false"])
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_schema_error_names_the_file_that_set_the_value(tmp_path):
    parent = tmp_path / "parent.yaml"
    parent.write_text(f"inherit: {DEFAULT_CONFIG}\ntrain:\n  batch: 1\n".replace("batch: 1", "steps: zero"))
    child = tmp_path / "child.yaml"
    child.write_text("inherit: parent.yaml\nseed: 4\n")
    with pytest.raises(ConfigError, match=r"parent.yaml: train.steps = 'zero': Input should be a valid integer"):
        load_config(child)
    # An override of the same key takes the blame instead, and fixes it.
    assert load_config(child, ["train.steps=3"]).train.steps == 3


def test_relative_paths_resolve_against_the_setting_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    config = folder / "mine.yaml"
    config.write_text(f"inherit: {DEFAULT_CONFIG}\n"
                      "data: {content_manifest: ../data/c.parquet, style_manifest: /abs/s.parquet}\n"
                      "stylize:\n  methods:\n    adain: {dir: ../models/adain, alpha: 0.5}\n"
                      "train:\n  model:\n    vgg: {weights: ~/vgg.pth}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config, ["world.dir=worlds/w"])
    assert cfg.data.content_manifest == str(tmp_path / "project" / "data" / "c.parquet")
    assert cfg.data.style_manifest == "/abs/s.parquet"
    assert cfg.stylize.methods["adain"] == {"dir": str(tmp_path / "project" / "models" / "adain"),
                                                  "alpha": 0.5}
    assert cfg.train.model.vgg.weights == str(Path.home() / "vgg.pth")
    assert cfg.world.dir == str(tmp_path / "worlds" / "w")   # an override: the working dir
    # The embedded default's world lives in the repository, wherever the command runs.
    assert load_config().world.dir == str(CONFIGS.parent / "data" / "tiny-world")


def test_an_inherit_loop_is_named_not_a_recursion_error(tmp_path):
    (tmp_path / "a.yaml").write_text("inherit: b.yaml\nseed: 1\n")
    (tmp_path / "b.yaml").write_text("inherit: a.yaml\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"^inherit loop: a\.yaml → b\.yaml → a\.yaml \(in "):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("inherit: b.yaml\n")     # a file that leads into the loop
    with pytest.raises(ConfigError, match=r"^inherit loop: b\.yaml → a\.yaml → b\.yaml"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "self.yaml").write_text("inherit: ./self.yaml\n")
    with pytest.raises(ConfigError, match=r"^inherit loop: self\.yaml → self\.yaml"):
        load_config(tmp_path / "self.yaml")


def test_a_key_given_twice_names_file_key_and_lines(tmp_path):
    config = tmp_path / "twice.yaml"
    config.write_text(f"inherit: {DEFAULT_CONFIG}\ntrain:\n  lr: 0.1\n  steps: 3\n  lr: 0.5\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: duplicate key 'train\.lr' at line 5 "
                                          r"\(first at line 3\)"):
        load_config(config)
    config.write_text(f"inherit: {DEFAULT_CONFIG}\nseed: 1\nseed: 1\n")   # even the same value
    with pytest.raises(ConfigError, match=r"twice\.yaml: duplicate key 'seed' at line 3"):
        load_config(config)
    with pytest.raises(ConfigError, match=r"override 'stylize.methods.adain=\{alpha: 1, alpha: 2\}': "
                                          r"duplicate key 'alpha'"):
        load_config(None, ["stylize.methods.adain={alpha: 1, alpha: 2}"])
    # The same key in two mappings is no duplicate.
    config.write_text(f"inherit: {DEFAULT_CONFIG}\ntrain: {{steps: 3}}\neval: {{batch_size: 3}}\n")
    assert load_config(config).train.steps == 3


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_the_typed_config_holds_the_values_as_written(name):
    # Numbers keep their type (1 stays 1, not 1.0): saved configs and hashes of models built
    # from the config stay as they were with the plain dict.
    assert load_config(CONFIGS / name).model_dump() == load_file(CONFIGS / name)


def test_paths_and_side_lists_come_from_the_schema():
    from common.schema import METHOD_FILE_OPTIONS, PATH_KEYS, baseline_eval_keys
    assert "train.model.vgg.weights" in PATH_KEYS and "world.dir" in PATH_KEYS
    assert {"dir", "predict_model", "transform_model"} <= set(METHOD_FILE_OPTIONS)
    assert baseline_eval_keys() == ("image_size", "moments_max_layer", "gram_layers",
                                    "gram_channels", "colour_bins")
    cfg = load_config(None, ["stylize.train_methods=[colour,gram]", "stylize.held_out=histogram"])
    assert cfg.stylize.methods_used == ["colour", "gram", "histogram"]
    with pytest.raises(ConfigError, match="model-file option must be a path"):
        load_config(None, ["stylize.methods.magenta.predict_model=3"])


def test_every_key_of_the_schema_says_what_it_means():
    from pydantic import BaseModel

    from common.schema import Config

    def undocumented(model, prefix=""):
        for name, field in model.model_fields.items():
            if not field.description:
                yield prefix + name
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from undocumented(field.annotation, f"{prefix}{name}.")
    assert list(undocumented(Config)) == []


def test_a_key_with_a_default_in_the_schema_needs_no_line_in_the_root_file():
    from pydantic import Field

    from common.schema import Config, Section, with_defaults

    class Branch(Section):
        enabled: bool = Field(False, description="use it")
        width: int = Field(8, description="its width")

    class Bigger(Config):
        branch: Branch = Field(default_factory=Branch, description="a new section")

    root = yaml.safe_load(DEFAULT_CONFIG.read_text())
    filled = with_defaults(root, Bigger)
    assert filled["branch"] == {"enabled": False, "width": 8} and "branch" not in root
    assert with_defaults({**root, "branch": {"width": 3}}, Bigger)["branch"] == {"width": 3, "enabled": False}
    assert with_defaults(root) == root   # tiny.yaml defines every key of today's schema
