"""YAML configs with inheritance and ``key.sub=value`` command-line overrides.

A config file may name a parent with ``inherit: other.yaml`` (resolved relative to the file).
The root of every chain (``configs/tiny.yaml``) defines every key (a key with a default in the
schema, ``common.schema``, may be left out of it); children and overrides may only change keys
that exist, so a typo is an error that names the key and suggests the
nearest valid one, instead of a silently ignored setting. Relative paths in a file (the keys of
``common.schema.PATH_KEYS`` and NST methods' model-file options) are resolved against that
file's folder, in an override against the working directory; a loaded config holds absolute
paths. The merged config is then checked against the typed schema (``common.schema``): a
wrong type or an out-of-range value is an error naming the key, the value and where it was set.
``load_config`` returns the validated :class:`common.schema.Config` (attribute access, typed
sections); files, overrides and the comparison with shards' recorded config work on plain
dicts, and ``save_config`` writes ``cfg.model_dump()``.
"""
from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from common import storage
from common.schema import METHOD_FILE_OPTIONS, PATH_KEYS, Config, open_keys, with_defaults

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "tiny.yaml"
RESOLVED_NAME = "config.yaml"

# Sections whose children are free-form (e.g. per-method options): new keys are allowed there.
# The schema types them as mappings.
OPEN_SECTIONS = open_keys()


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message names file and key."""


class _DuplicateKey(Exception):
    """A key given twice in one YAML mapping; the caller adds the file or override."""

    def __init__(self, dotted: str, line: int, first: int):
        super().__init__(f"duplicate key '{dotted}' at line {line} (first at line {first})")


def _check_duplicates(node: yaml.Node, prefix: str = "", seen: set[int] | None = None) -> None:
    """Raise _DuplicateKey for a key given twice in one mapping of the tree under ``node``."""
    seen = set() if seen is None else seen
    if id(node) in seen:   # an alias: its anchor's tree was checked already
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else f"<{key.tag}>"
            dotted, line = f"{prefix}{name}", key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, key.value) in lines:
                    raise _DuplicateKey(dotted, line, lines[key.tag, key.value])
                lines[key.tag, key.value] = line
            _check_duplicates(value, dotted + ".", seen)
    elif isinstance(node, yaml.SequenceNode):
        for number, item in enumerate(node.value):
            _check_duplicates(item, f"{prefix}{number}.", seen)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML keeps the last one,
    so an edit meant to change a setting could be silently undone further down the file."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_duplicates(node)
        return super().construct_document(node)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)


def _read_yaml(path: str | Path) -> dict:
    try:
        data = _load_yaml(storage.read_text(path)) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _is_open(dotted: str) -> bool:
    return any(dotted == s or dotted.startswith(s + ".") for s in OPEN_SECTIONS)


def _unknown_key_error(dotted: str, known: Iterable[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(dotted.split(".")[-1], list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{source}: unknown config key '{dotted}'{hint}")


def merge(base: dict, update: dict, source: str, prefix: str = "") -> dict:
    """Return ``base`` updated by ``update``; keys absent from ``base`` are errors."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in out and not _is_open(prefix.rstrip(".")) and not _is_open(dotted):
            raise _unknown_key_error(dotted, out.keys(), source)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, source, dotted + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve(value: Any, folder: Path) -> Any:
    if not isinstance(value, str) or not value or "://" in value:
        return value   # null, a wrong type (the schema names it) or a URL
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


_MISSING = object()


def _lookup(data: Any, keys: Iterable[str]) -> Any:
    """The value at the nested ``keys`` of ``data``; ``_MISSING`` where a level is absent or
    not a mapping (a config file may hold anything until the schema has checked it)."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def resolve_paths(data: dict, folder: Path) -> dict:
    """``data`` (a config file's mapping or an override) with its relative paths made absolute
    against ``folder``."""
    data = copy.deepcopy(data)
    for dotted in PATH_KEYS:
        *parents, leaf = dotted.split(".")
        section = _lookup(data, parents)
        if isinstance(section, dict) and leaf in section:
            section[leaf] = _resolve(section[leaf], folder)
    methods = _lookup(data, ("stylize", "methods"))
    for options in methods.values() if isinstance(methods, dict) else ():
        if isinstance(options, dict):
            for key in set(options) & set(METHOD_FILE_OPTIONS):
                options[key] = _resolve(options[key], folder)
    return data


class _InheritLoop(ConfigError):
    """Raised as it is through every file of the loop (each would only repeat it)."""


def _loop_error(chain: tuple[Path, ...]) -> _InheritLoop:
    folders = {p.parent for p in chain}
    names = [p.name if len(folders) == 1 else str(p) for p in chain]
    where = f" (in {chain[0].parent})" if len(folders) == 1 else ""
    return _InheritLoop(f"inherit loop: {' → '.join(names)}{where}")


def load_file(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A config file merged over its ``inherit`` ancestors; ``_chain`` holds the files that
    inherit it (a file among them is a loop, which would otherwise recurse without end)."""
    if storage.is_url(path):   # a config saved beside a run's outputs: resolved, self-contained
        return _read_yaml(path)
    path = Path(path).resolve()
    if path in _chain:
        raise _loop_error(_chain[_chain.index(path):] + (path,))
    data = resolve_paths(_read_yaml(path), path.parent)
    parent = data.pop("inherit", None)
    if parent is None:   # the root (configs/tiny.yaml): keys with a default may be left out
        return with_defaults(data)
    try:
        base = load_file(path.parent / parent, _chain + (path,))
    except _InheritLoop:
        raise
    except ConfigError as exc:
        raise ConfigError(f"{path}: inherit: {parent!r} (resolved against the file's folder): {exc}") from None
    return merge(base, data, str(path))


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    # YAML parsing gives numbers, booleans, null and [lists] their natural types.
    try:
        value = _load_yaml(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': the value is not valid YAML: {exc}") from None
    except _DuplicateKey as exc:
        raise ConfigError(f"override '{text}': {exc}") from None
    return key.strip().split("."), value


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        cfg = merge(cfg, resolve_paths(nested, Path.cwd()), f"override '{text}'")
    return cfg


def _file_chain(path: Path) -> list[Path]:
    """A config file and its ``inherit`` ancestors, child first."""
    chain = [path.resolve()]
    while (parent := _read_yaml(chain[-1]).get("inherit")) is not None:
        chain.append((chain[-1].parent / parent).resolve())
    return chain


def _set_by(keys: tuple, path: Path, overrides: list[str]) -> str:
    """Where the value at ``keys`` came from: the last override or the nearest file setting it."""
    for text in reversed(overrides):
        set_keys = tuple(parse_override(text)[0])
        if keys[: len(set_keys)] == set_keys or set_keys[: len(keys)] == keys:
            return f"override '{text}'"
    return str(next((f for f in _file_chain(path) if _lookup(_read_yaml(f), keys) is not _MISSING), path))


def as_dict(cfg: Config | dict) -> dict:
    """``cfg`` as a plain dict (a copy when it is the typed config)."""
    return cfg.model_dump() if isinstance(cfg, Config) else cfg


def validate(cfg: dict, path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """``cfg`` checked against the schema, as the typed config; the error names each bad key,
    its value and its source."""
    try:
        return Config.model_validate(cfg)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            keys = tuple(k for k in error["loc"] if isinstance(k, str))
            dotted = ".".join(str(k) for k in error["loc"]) or "(top level)"
            shown = "" if error["type"] in ("missing", "value_error") else f" = {error['input']!r}"
            lines.append(f"{_set_by(keys, Path(path), list(overrides))}: "
                         f"{dotted}{shown}: {error['msg']}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a config file (the embedded default when ``path`` is None), apply overrides and
    check the result against the schema."""
    overrides = list(overrides)
    path = path or DEFAULT_CONFIG
    cfg = validate(apply_overrides(load_file(path), overrides), path, overrides)
    storage.configure_from(cfg)
    return cfg


# Sections that define what stage 1 wrote: a run reading shards must agree with them.
SHARD_SECTIONS = ("seed", "world", "data", "stylize")
RUNTIME_KEYS = ("stylize.ray",)   # how stage 1 ran, not what it made


def _differences(a: Any, b: Any, prefix: str) -> Iterable[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            dotted = f"{prefix}.{key}" if prefix else key
            if dotted not in RUNTIME_KEYS:
                yield from _differences(a.get(key), b.get(key), dotted)
    elif a != b:
        yield prefix, a, b


def config_for_shards(path: str | Path | None, overrides: Iterable[str], shards: str | Path) -> Config:
    """The config of a run that reads stage 1's shards (training, evaluation).

    Without ``path`` it is the config stage 1 recorded with the shards (``<shards>/config.yaml``),
    not the embedded default: shards made at 224 px train at 224 px. With ``path``, the keys that
    define the shards (``SHARD_SECTIONS``) must agree with the recorded ones: a contradiction is
    an error naming the key, not a silent mismatch. ``shards`` may be a URL: the storage options
    of ``--config`` and the overrides apply to reading it.
    """
    recorded = storage.join(shards, RESOLVED_NAME)
    overrides = list(overrides)
    # Not yet checked by the schema (the shards' config may be the one to use): read by key.
    options = _lookup(apply_overrides(load_file(path or DEFAULT_CONFIG), overrides),
                      ("storage", "options"))
    storage.configure(None if options is _MISSING else options)
    if not storage.is_file(recorded):
        if path is None:
            raise ConfigError(f"no --config given and {recorded} (written by stage 1) is missing: "
                              "pass the config the shards were made with")
        return load_config(path, overrides)
    stored = recorded_config(shards)
    cfg = validate(apply_overrides(load_file(path) if path else stored, overrides),
                   path or recorded, overrides)
    for key, mine, theirs in shard_differences(cfg, stored):
        raise ConfigError(f"{key} is {mine!r} here but the shards were made with {theirs!r} "
                          f"({recorded}): leave --config out to use the shards' config, or fix it")
    storage.configure_from(cfg)
    return cfg


def recorded_config(shards: str | Path) -> dict:
    """The config stage 1 recorded in ``shards``. It is complete for the code that wrote it;
    keys added since come from the embedded default."""
    recorded = storage.join(shards, RESOLVED_NAME)
    return merge(load_file(DEFAULT_CONFIG), load_file(recorded), str(recorded))


def shard_differences(cfg: Config | dict, other: Config | dict) -> list[tuple[str, Any, Any]]:
    """(key, value in cfg, value in other) for each key that defines what stage 1 makes."""
    cfg, other = as_dict(cfg), as_dict(other)
    return list(_differences({k: cfg.get(k) for k in SHARD_SECTIONS},
                             {k: other.get(k) for k in SHARD_SECTIONS}, ""))


# Option names that hold credentials in fsspec backends' options (s3fs key/secret/token,
# gcsfs token, adlfs account_key/sas_token/connection_string/client_secret/credential...).
SECRET_OPTION = re.compile(r"key|secret|token|password|passwd|credential|connection_string|sas",
                           re.IGNORECASE)


def _without_secrets(options: Any) -> Any:
    if not isinstance(options, dict):
        return options
    return {name: _without_secrets(value) for name, value in options.items()
            if not SECRET_OPTION.search(str(name))}


def public(cfg: Config | dict) -> dict:
    """``cfg`` as it may be written down (saved configs, checkpoints), a plain dict: the
    storage options without their credentials."""
    cfg = as_dict(cfg)
    options = _lookup(cfg, ("storage", "options"))
    if options is _MISSING:
        return cfg
    return {**cfg, "storage": {**cfg["storage"], "options": _without_secrets(options)}}


def save_config(cfg: Config | dict, out_dir: str | Path, name: str = RESOLVED_NAME) -> str | Path:
    """Write the resolved config (without credentials) next to a run's outputs, atomically;
    returns where (a Path for a local folder)."""
    target = storage.join(out_dir, name)
    storage.write_bytes(target, yaml.safe_dump(public(cfg), sort_keys=False).encode())
    return storage.path_or_url(target)


def add_config_args(parser) -> None:
    """The flags every entry point shares: ``--config`` plus trailing overrides."""
    parser.add_argument("--config", default=None,
                        help="YAML config; relative paths inside it (inherit, manifests, "
                             "world.dir, model files) are resolved against its folder (default: "
                             "for commands that read shards, the config stage 1 recorded with "
                             "them; otherwise configs/tiny.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="override any config key, e.g. train.steps=50 (a relative path "
                             "here is relative to the working directory)")
