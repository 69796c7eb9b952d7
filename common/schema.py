"""The config's typed schema: every key's type and range, checked when a config loads.

`configs/tiny.yaml` documents what each key means; this module says what values it may take.
Validation is strict (YAML already gives numbers, booleans and lists their types, so a string
where a number belongs is a mistake, not something to coerce) and runs before any work starts.
The config itself stays a plain dict: the schema checks it, it does not replace it.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Side = Annotated[int, Field(ge=8)]          # image sides: common.images.MIN_SIDE and up
Fraction = Annotated[float, Field(gt=0, lt=1)]
Strength = Annotated[float, Field(ge=0, le=1)]
Text = Annotated[str, Field(min_length=1)]
FilePath = Optional[Text]                   # relative: to the folder of the file that sets it
Relu = Annotated[str, Field(pattern=r"^relu[1-5]_[1-4]$")]


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class World(Section):
    dir: Text
    categories: Annotated[list[Text], Field(min_length=1)]
    contents_per_category: Positive
    groups_per_category: Positive
    images_per_group: Positive
    subjects_per_group: Positive
    palettes_per_group: Positive
    content_size: Side
    style_size: Side


class Data(Section):
    content_manifest: FilePath
    style_manifest: FilePath

    @model_validator(mode="after")
    def both_or_neither(self) -> "Data":
        if (self.content_manifest is None) != (self.style_manifest is None):
            raise ValueError("give both content_manifest and style_manifest, or neither (the "
                             "synthetic world)")
        return self


class StylizeRay(Section):
    address: Optional[Text]
    num_actors: Positive
    num_cpus_per_actor: PositiveFloat
    num_gpus_per_actor: NonNegativeFloat
    batch_size: Positive
    half_precision: bool
    object_store_mb: Positive
    max_restarts: NonNegative
    shard_retries: NonNegative
    actor_resources: dict[Text, PositiveFloat]


class Stylize(Section):
    image_size: Side
    style_image_size: Side
    jpeg_quality: Annotated[int, Field(ge=1, le=100)]
    methods: Annotated[dict[Text, dict[Text, Any]], Field(min_length=1)]
    train_methods: Annotated[list[Text], Field(min_length=1)]
    held_out: Optional[Text]
    strength: Union[Strength, Annotated[list[Strength], Field(min_length=1)]]
    test_fraction: Fraction
    test_styles_per_group: Positive
    train_contents_per_style: Positive
    test_contents_per_style: Positive
    styles_per_shard: Positive
    crops_grid: Positive
    crops_size: Side
    square: Literal["crop", "pad"]
    ray: StylizeRay

    @model_validator(mode="after")
    def methods_configured(self) -> "Stylize":
        named = [*self.train_methods, *([self.held_out] if self.held_out else [])]
        missing = [m for m in named if m not in self.methods]
        if missing:
            raise ValueError(f"{missing} named in train_methods/held_out but not configured under "
                             f"methods ({', '.join(self.methods)})")
        if self.held_out in self.train_methods:
            raise ValueError(f"held_out {self.held_out!r} is also in train_methods: a held-out "
                             "method must be unseen in training")
        return self


class Vit(Section):
    enabled: bool
    name: Text
    pretrained_file: FilePath
    patch_size: Positive
    depth: Optional[Positive]


class Vgg(Section):
    enabled: bool
    weights: FilePath
    trainable: bool
    max_layer: Relu


class StyleNet(Section):
    enabled: bool
    style_size: Annotated[int, Field(ge=32)]    # stylize.magenta.MIN_STYLE_SIZE
    residual: bool


class Model(Section):
    embed_dim: Positive
    vit: Vit
    vgg: Vgg
    style_net: StyleNet
    fusion_hidden: Positive

    @model_validator(mode="after")
    def one_branch(self) -> "Model":
        if not (self.vit.enabled or self.vgg.enabled or self.style_net.enabled):
            raise ValueError("vit.enabled, vgg.enabled and style_net.enabled are all false: "
                             "enable at least one branch")
        # The code starts as the style vector itself: it needs room for its 100 dimensions
        # (stylize.magenta.STYLE_DIM) to keep every cosine, and so every ranking, unchanged.
        if self.style_net.enabled and self.style_net.residual and self.embed_dim < 100:
            raise ValueError(f"style_net.residual needs embed_dim >= 100 (the style vector's "
                             f"size), got {self.embed_dim}: raise embed_dim or set "
                             "style_net.residual=false")
        return self


class Train(Section):
    mode: Literal["nst", "no_nst"]
    positives: Literal["style", "group", "both"]
    image_size: Side
    steps: Positive
    warmup_steps: NonNegative
    styles_per_batch: Annotated[int, Field(ge=2)]   # a contrastive batch needs negatives
    images_per_style: Positive
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    grad_clip: NonNegativeFloat
    temperature: PositiveFloat
    ss_weight: NonNegativeFloat
    augment: bool
    num_workers: NonNegative
    shuffle_buffer: Positive
    log_every: Positive
    checkpoint_every: Positive
    threads: Optional[Positive]
    bad_shards: Literal["error", "skip"]
    tensorboard: bool
    model: Model


class Fused(Section):
    models: Annotated[list[Text], Field(min_length=2, max_length=2)]
    weights: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] = [1.0, 1.0]


class Head(Section):
    hidden: NonNegative
    temperature: PositiveFloat
    symmetric: bool
    epochs: Positive
    batch_size: Positive
    lr: PositiveFloat
    weight_decay: NonNegativeFloat


class Tagging(Section):
    enabled: bool
    text_model: FilePath
    zero_shot_tags: list[Text]
    picture_images: NonNegative
    head: Head


class Labelled(Section):
    table: FilePath
    columns: Optional[Annotated[list[Text], Field(min_length=1)]]
    protocols: Annotated[list[Literal["loo", "split", "unseen"]], Field(min_length=1)]
    split_file: FilePath
    query_fraction: Fraction
    ks: Annotated[list[Positive], Field(min_length=1)]
    world: bool
    picture_queries: NonNegative


class Eval(Section):
    image_size: Side
    batch_size: Positive
    chunk_size: Positive
    baselines: list[Text]
    moments_max_layer: Relu
    gram_layers: Annotated[list[Relu], Field(min_length=1)]
    gram_channels: Positive
    colour_bins: Annotated[int, Field(ge=2)]
    grid_queries: NonNegative
    grid_neighbours: Positive
    fused: list[Fused]
    tagging: Tagging
    labelled: Labelled


class Demo(Section):
    nproc_per_node: Positive
    run: Annotated[list[Text], Field(min_length=1)]
    variants: dict[Text, list[Text]]

    @model_validator(mode="after")
    def runs_known(self) -> "Demo":
        unknown = [name for name in self.run if name not in self.variants]
        if unknown:
            raise ValueError(f"run names {unknown}, not in variants ({', '.join(self.variants)})")
        return self


class EmbedRay(Section):
    address: Optional[Text]
    num_actors: Positive
    num_cpus_per_actor: PositiveFloat
    num_gpus_per_actor: Optional[NonNegativeFloat]
    decode_threads: Positive
    object_store_mb: Positive


class Embed(Section):
    batch_size: Positive
    rows_per_file: Positive
    extensions: Annotated[list[Annotated[str, Field(pattern=r"^\.\w+$")]], Field(min_length=1)]
    fuse_weights: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)]
    progress_every_s: NonNegativeFloat
    ray: EmbedRay


class Search(Section):
    index: Literal["flat", "ivfpq", "hnsw"]
    k: Positive
    ivf_lists: Optional[Positive]
    pq_bytes: Optional[Positive]
    pq_bits: Annotated[int, Field(ge=1, le=16)]
    nprobe: Positive
    hnsw_neighbours: Positive
    hnsw_ef_construction: Positive
    hnsw_ef_search: Positive
    recall_queries: Positive
    threads: Optional[Positive]


class Storage(Section):
    # Per URL scheme (s3, gs, az...), the options of its fsspec backend (common.storage).
    options: dict[Text, dict[Text, Any]]


class Config(Section):
    seed: NonNegative
    world: World
    data: Data
    stylize: Stylize
    train: Train
    eval: Eval
    demo: Demo
    embed: Embed
    search: Search
    storage: Storage


# Keys naming files or folders, resolved against the folder of the file that sets them (the
# working directory for a command-line override), and options of NST methods that name model
# files (stylize.methods.<name>.<option>).
PATH_KEYS = ("world.dir", "data.content_manifest", "data.style_manifest",
             "train.model.vit.pretrained_file", "train.model.vgg.weights", "eval.tagging.text_model",
             "eval.labelled.table", "eval.labelled.split_file")
METHOD_FILE_OPTIONS = ("dir", "vgg", "decoder", "transformer", "encoder", "ae", "dec_b",
                       "pama1", "pama2", "pama3", "predict_model", "transform_model")
