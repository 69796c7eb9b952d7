"""Where a run reads and writes: a local path or an fsspec URL, through one small API.

Every location a user gives (shards, run folders, checkpoints, reports, collections, indexes)
may be a local path or a URL: ``s3://``, ``gs://``, ``az://`` (with s3fs, gcsfs or adlfs
installed), ``file://``, or ``memory://`` (tests). Connection options come from, in order:

1. the backend's own defaults, which read the usual environment variables and files (S3:
   ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
   ``~/.aws``; GCS: ``GOOGLE_APPLICATION_CREDENTIALS``; Azure: ``AZURE_STORAGE_*``);
2. fsspec's own config (``~/.config/fsspec/*.json``, ``FSSPEC_<PROTOCOL>_<OPTION>`` variables);
3. the config's ``storage.options.<protocol>`` section, passed to :func:`configure`.

Credentials belong in 1 or 2: a config is saved with every run, and ``common.config.public``
drops anything secret-looking from it before it is written anywhere.

Writes are atomic (:func:`temporary_file`, then :func:`publish_file`): a local file is filled
under a temporary name beside it and renamed (``common.files``); an object is uploaded from a
local temporary file once the block succeeds (one put, or a multipart upload that appears only
when complete), so a half-written object never exists. A failed storage call is a
:class:`StorageError` that names the location; :func:`check_readable` and
:func:`check_writable` let entry points fail on a bad location before any work.
"""
from __future__ import annotations

import posixpath
import re
import tempfile
import uuid
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Iterator

import fsspec
from fsspec import AbstractFileSystem

from common.files import json_text, publish, staged_output, temporary_path

if TYPE_CHECKING:
    from common.schema import Config

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_options: dict[str, dict] = {}


class StorageError(ValueError):
    """A location that cannot be used; the message names it and why."""


def configure(options: dict[str, dict] | None) -> None:
    """Set the per-protocol options of the config's ``storage.options`` section (they apply
    over the environment's and fsspec's own)."""
    _options.clear()
    _options.update(options or {})


def configure_from(cfg: Config) -> None:
    """:func:`configure` from a loaded config's storage options."""
    configure(cfg.storage.options)


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and bool(_URL.match(location))


def scheme(location: str | Path) -> str:
    return str(location).split("://", 1)[0] if is_url(location) else "file"


def resolve(location: str | Path) -> str:
    """A URL as given; a local path made absolute (the working directory may change)."""
    return location if is_url(location) else str(Path(location).expanduser().resolve())


def path_or_url(location: str | Path) -> str | Path:
    """A URL as it is, a local path as a Path: for callers that use Path's methods on local
    files (and keep working as they did)."""
    return location if is_url(location) else Path(location)


def join(base: str | Path, *parts: str) -> str:
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *(part.strip("/") for part in parts)])
    return str(Path(base, *parts))


def name(location: str | Path) -> str:
    return posixpath.basename(str(location).rstrip("/"))


def parent(location: str | Path) -> str:
    return str(location).rstrip("/").rsplit("/", 1)[0] if is_url(location) else str(Path(location).parent)


def with_suffix(location: str | Path, suffix: str) -> str:
    """``shard-000001.tar`` -> ``shard-000001<suffix>`` (as ``Path.with_suffix``)."""
    return str(Path(location).with_suffix(suffix)) if not is_url(location) else \
        posixpath.splitext(str(location))[0] + suffix


def filesystem(location: str | Path) -> tuple[AbstractFileSystem, str]:
    """The fsspec file system of ``location`` and the path within it."""
    protocol = scheme(location)
    # No cached listings: other processes (stage 1's actors, other nodes) write the same
    # prefixes, and a listing remembered from before their writes would hide their files.
    options = {"use_listings_cache": False, **_options.get(protocol, {})}
    try:
        return fsspec.core.url_to_fs(str(location), **options)
    except ImportError as exc:   # a known scheme whose backend is not installed
        raise StorageError(f"{location}: no backend for {protocol}:// is installed ({exc})") from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise StorageError(f"{location}: unknown URL scheme '{protocol}://' (no fsspec "
                               "backend of that name)") from None
        raise StorageError(f"{location}: {exc}") from None


def _reason(location: str | Path, exc: Exception) -> str:
    """Why a storage call failed, in words (the caller names the location)."""
    if isinstance(exc, PermissionError):
        return (f"access denied ({exc}): check the credentials (environment variables, "
                "profile, fsspec config)")
    if isinstance(exc, OSError) and exc.strerror and not is_url(location):
        return exc.strerror.lower()   # a local file system's: read-only, no space...
    if isinstance(exc, (OSError, StorageError)):
        return str(exc)
    # Backends raise their own types for the network (botocore, aiohttp, google.auth).
    return f"the storage cannot be reached or refused the request ({type(exc).__name__}: {exc})"


@contextmanager
def _errors(location: str | Path) -> Iterator[None]:
    """Turn a backend's failure on a URL into a StorageError naming it. A missing object stays
    a FileNotFoundError (callers say what was expected there); local paths keep their own
    errors, as they always had."""
    try:
        yield
    except (StorageError, FileNotFoundError):
        raise
    except Exception as exc:
        if not is_url(location):
            raise
        raise StorageError(f"{location}: {_reason(location, exc)}") from None


def _url_kind(location: str) -> str | None:
    """``file``, ``directory`` (on an object store: a prefix that holds objects) or None when
    nothing is there. Not fsspec's ``exists``/``isfile``: s3fs's answer False for any failure,
    so an unreachable endpoint would read as a missing file."""
    fs, path = filesystem(location)
    with _errors(location):
        try:
            return fs.info(path)["type"]
        except FileNotFoundError:
            return None


def exists(location: str | Path) -> bool:
    return _url_kind(location) is not None if is_url(location) else Path(location).exists()


def is_file(location: str | Path) -> bool:
    return _url_kind(location) == "file" if is_url(location) else Path(location).is_file()


def is_dir(location: str | Path) -> bool:
    return _url_kind(location) == "directory" if is_url(location) else Path(location).is_dir()


def _located(fs: AbstractFileSystem, location: str | Path, paths: Iterable[str]) -> list[str]:
    """Backend paths as the caller's kind of location (URLs stay URLs)."""
    return sorted(fs.unstrip_protocol(p) if is_url(location) else p for p in paths)


def listdir(location: str | Path) -> list[str]:
    """The locations directly under a folder (or prefix), sorted."""
    fs, path = filesystem(location)
    with _errors(location):
        return _located(fs, location, fs.ls(path, detail=False))


def glob(pattern: str | Path) -> list[str]:
    fs, path = filesystem(pattern)
    with _errors(pattern):
        return _located(fs, pattern, fs.glob(path))


def find(location: str | Path) -> list[tuple[str, str]]:
    """Every file under a folder (or prefix), recursively: (its path relative to the folder,
    its location), sorted."""
    fs, path = filesystem(location)
    root = path.rstrip("/") + "/"
    with _errors(location):
        found = fs.find(path)
    return sorted((p[len(root):], fs.unstrip_protocol(p) if is_url(location) else p)
                  for p in found if p.startswith(root))


def open_input(location: str | Path, mode: str = "rb") -> BinaryIO:
    """A readable file object (seekable: object stores read ranges on demand)."""
    fs, path = filesystem(location)
    with _errors(location):
        return fs.open(path, mode)


def read_bytes(location: str | Path) -> bytes:
    fs, path = filesystem(location)
    with _errors(location):
        return fs.cat_file(path)


def read_text(location: str | Path) -> str:
    return read_bytes(location).decode()


@contextmanager
def open_output(location: str | Path) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``location`` only when the block succeeds: a
    failed block leaves no temporary file and publishes nothing."""
    with staged_output(temporary_file(location),
                       partial(publish_file, location=location)) as handle:
        yield handle


def _put(local_file: str | Path, location: str | Path) -> None:
    """Upload a whole local file: one put, or a multipart upload that S3-like stores show only
    once it is complete."""
    fs, path = filesystem(location)
    with _errors(location):
        fs.put_file(str(local_file), path)


def write_bytes(location: str | Path, data: bytes) -> None:
    with open_output(location) as handle:
        handle.write(data)


def write_text(location: str | Path, text: str) -> None:
    write_bytes(location, text.encode())


def write_json(location: str | Path, payload: Any) -> None:
    """As ``common.files.write_json``, to any location."""
    write_text(location, json_text(payload))


def remove(location: str | Path) -> None:
    """Delete a file or object; a missing one is no error."""
    if not is_url(location):
        Path(location).unlink(missing_ok=True)
        return
    fs, path = filesystem(location)
    with _errors(location):
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass


def temporary_file(location: str | Path) -> Path:
    """A local file name to fill before :func:`publish_file` puts it at ``location``: next to
    a local target (so the publish is a rename), in the local temp folder for a URL."""
    if not is_url(location):
        makedirs(parent(location))
        return temporary_path(Path(location))
    return Path(tempfile.gettempdir(), f"nststyle-{uuid.uuid4().hex}-{name(location)}")


def publish_file(local_file: Path, location: str | Path) -> None:
    """Put a complete local file at ``location`` whole: renamed over a local target; uploaded
    to an object (one put or a multipart upload: never visible half-written), then the local
    file deleted."""
    if not is_url(location):
        publish(local_file, Path(location))
        return
    _put(local_file, location)
    local_file.unlink()


def makedirs(location: str | Path) -> None:
    """Create a local folder; object stores have no folders to create."""
    if not is_url(location):
        Path(location).mkdir(parents=True, exist_ok=True)


def upload(folder: str | Path, location: str) -> None:
    """Copy every file under a local ``folder`` to the same relative names under the URL
    ``location``, each uploaded whole."""
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        _put(path, join(location, *path.relative_to(folder).parts))


def download(location: str | Path, path: str | Path) -> None:
    """Copy one object to a local file (``path``'s folder is made)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(read_bytes(location))


def check_readable(location: str | Path, what: str = "input") -> None:
    """Fail now, naming ``location``, when it does not exist or cannot be reached or read."""
    fs, path = filesystem(location)
    with _errors(location):
        try:
            fs.info(path)
        except FileNotFoundError as exc:
            detail = f" ({exc})" if str(exc) and str(exc) != path else ""
            raise StorageError(f"{what} not found: {location}{detail}") from None


def check_writable(location: str | Path, what: str = "output folder") -> None:
    """Fail now, naming ``location``, when a file cannot be written under it: a small probe
    is written and deleted (a missing bucket, denied access or a read-only folder shows here,
    not at the end of a long run)."""
    fs, path = filesystem(location)
    probe = posixpath.join(path, f".write-check-{uuid.uuid4().hex}")
    try:
        makedirs(location)
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except Exception as exc:   # a missing bucket, denied access, a read-only file system...
        raise StorageError(f"cannot write to {what} {location}: {_reason(location, exc)}") from None


def _webdataset_open(url: str, mode: str = "rb", bufsize: int = 8192, **kwargs) -> BinaryIO:
    """webdataset's opener for a URL scheme (its ``gopen_schemes`` table): through fsspec with
    this module's options, instead of the shell tools webdataset pipes from by default."""
    return open_input(url, mode)


def register_streams(urls: Iterable[str]) -> None:
    """Have webdataset open the URL schemes among ``urls`` through this module."""
    import webdataset as wds

    for scheme_name in {scheme(url) for url in urls if is_url(url)} - {"file"}:
        wds.gopen_schemes[scheme_name] = _webdataset_open


def check_remote(read: Iterable[str | Path] = (), write: Iterable[str | Path] = ()) -> None:
    """An entry point's up-front checks of the URLs among its inputs (``read``) and output
    folders (``write``), before any work. Local paths are left to the code that uses them,
    which names them in its own words (a missing shards folder, a read-only run folder)."""
    for location in read:
        if location is not None and is_url(location):
            check_readable(location)
    for location in write:
        if location is not None and is_url(location):
            check_writable(location)


class LocalMirror:
    """A local folder standing for ``location``, for writers that need a local file system
    (appended logs, TensorBoard, plotting libraries): the folder itself when ``location`` is
    local; for a URL a temporary folder whose files :meth:`push` uploads (each atomically)."""

    def __init__(self, location: str | Path):
        self.location = location
        self._temporary = tempfile.TemporaryDirectory(prefix="nststyle-") if is_url(location) else None
        self.folder = Path(self._temporary.name if self._temporary else location)

    def __enter__(self) -> "LocalMirror":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()

    def pull(self, pattern: str) -> None:
        """Copy the top-level files of ``location`` matching ``pattern`` into the folder, to
        be appended to (a resumed run's logs)."""
        if self._temporary is None:
            return
        for found in glob(join(self.location, pattern)):
            download(found, self.folder / name(found))

    def push(self) -> None:
        if self._temporary is not None:
            upload(self.folder, self.location)
