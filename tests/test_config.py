from pathlib import Path

import pytest
import yaml

from common.config import ConfigError, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_default_config_loads_and_overrides_take_yaml_types():
    cfg = load_config(None, ["train.steps=7", "stylize.train_methods=[colour,gram]",
                             "data.content_manifest=null", "train.lr=0.5"])
    assert cfg["train"]["steps"] == 7
    assert cfg["stylize"]["train_methods"] == ["colour", "gram"]
    assert cfg["data"]["content_manifest"] is None
    assert cfg["train"]["lr"] == 0.5


def test_typo_in_override_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"train\.stpes.*did you mean 'steps'"):
        load_config(None, ["train.stpes=3"])


def test_override_without_equals_sign_is_refused():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["train.steps"])


def test_child_config_inherits_and_typo_in_file_names_file(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"inherit: {CONFIGS / 'tiny.yaml'}\ntrain:\n  steps: 11\n")
    assert load_config(child)["train"]["steps"] == 11
    assert load_config(child)["train"]["lr"] == load_config()["train"]["lr"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"inherit: {CONFIGS / 'tiny.yaml'}\ntrian:\n  steps: 11\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'trian'.*did you mean 'train'"):
        load_config(bad)


def test_method_options_are_an_open_section():
    cfg = load_config(None, ["stylize.methods.adain.alpha=0.5"])
    assert cfg["stylize"]["methods"]["adain"] == {"alpha": 0.5}


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
    assert yaml.safe_load(path.read_text()) == cfg


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_resolves(name):
    assert "train" in load_config(CONFIGS / name)
