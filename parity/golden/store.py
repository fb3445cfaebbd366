"""Save and load goldens: a baseline's trace, compressed, with its provenance, one per pair and environment.

Layout (goldens/README.md): `<directory>/<pair>/<environment id>/trace.jsonl.xz` (the trace as JSON
Lines, xz-compressed) and `golden.json` beside it (format version, provenance, sha256 of the data file, step
count). A pair keeps one golden per environment and its history in version control, so file names are
fixed rather than stamped with commit and time: an update is a diff of two files, and `golden.json`
carries the commit and the date.

Changelog of GOLDEN_VERSION:
  1 -- first version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import lzma
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from parity.exceptions import GoldenError, GoldenMissingError
from parity.golden.envid import Provenance, environment_id, provenance_from_header
from parity.trace import schema
from parity.trace.reader import Run, Trace, load_run, parse_trace
from parity.trace.writer import encode_record

if TYPE_CHECKING:
    from parity.checks.bands import Bands

GOLDEN_FORMAT = "parity.golden"
GOLDEN_VERSION = 1
DATA_FILE = "trace.jsonl.xz"
INDEX_FILE = "golden.json"
#: In the pair's folder: every save and load of any of its environments holds it.
LOCK_FILE = ".lock"

#: Step fields a golden leaves out: timings and memory vary run to run and no check compares them; RNG
#: digests serve resume checks and audits, never a gate. Everything else (including fields a later
#: schema adds) is kept, so the checks see what they would see in the recorded trace.
_NOT_STORED_STEP_FIELDS = frozenset({schema.F_WALL_MS, schema.F_PEAK_MEM, schema.F_RNG})
#: Facts of the recording process that change on every save and that no check reads; left out so that
#: saving an unchanged baseline again rewrites identical bytes.
_NOT_STORED_HEADER_FIELDS = frozenset({schema.H_PID})
_NOT_STORED_HEADER_META = frozenset({schema.RUN_LOAD, schema.RUN_HOSTNAME})
_NOT_STORED_END_FIELDS = frozenset({schema.E_LOAD})
#: Repeats in a trace sit within a few records (field names, a batch digest beside its field digest);
#: a 64 KiB window and hash-chain matching find them all at a third of the default preset's time.
_XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 16, "mf": lzma.MF_HC4}]


def golden_records(trace: Trace) -> list[dict[str, Any]]:
    """The records a golden stores for `trace`, in trace order: header, meta, steps, end."""
    header = {k: v for k, v in trace.header.items() if k not in _NOT_STORED_HEADER_FIELDS}
    if isinstance(header.get(schema.H_RUN), dict):
        header[schema.H_RUN] = {k: v for k, v in header[schema.H_RUN].items() if k not in _NOT_STORED_HEADER_META}
    records = [header]
    records += [{schema.F_TYPE: schema.META, schema.M_KEY: key, schema.M_VALUE: value} for key, value in trace.meta.items()]
    records += [_without_derived_values({k: v for k, v in step.items() if k not in _NOT_STORED_STEP_FIELDS})
                for step in trace.steps]
    if trace.end is not None:
        records.append({k: v for k, v in trace.end.items() if k not in _NOT_STORED_END_FIELDS})
    return records


def _primary_trace(source: Trace | Run | str | os.PathLike) -> Trace:
    """The trace a gate compares: rank 0 of a run (a run directory, a trace file, or already loaded)."""
    if isinstance(source, Trace):
        return source
    run = source if isinstance(source, Run) else load_run(source)
    return run.primary


def _path_component(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise GoldenError(f"{what} {name!r}: expected a plain folder name (no '/', not '.' or '..')")
    return name


@contextlib.contextmanager
def _locked(pair_dir: Path, exclusive: bool) -> Iterator[None]:
    """Hold the pair's lock: exclusive for a save, shared for a load, so a load never sees one save's
    data file beside another's golden.json. A read-only golden folder (a CI checkout) cannot be written
    by anyone, so a load there goes ahead without the lock."""
    lock_path = pair_dir / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if exclusive:
            raise GoldenError(f"{lock_path}: cannot create the golden lock: {exc.strerror or exc}") from None
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _new_file_mode() -> int:
    umask = os.umask(0)  # the only way to read it; set straight back
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Readers see the old file or the new one, never a part; fsynced because goldens are kept for years."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600; a golden is an ordinary (often committed) file
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_golden(trace_or_run_dir: Trace | Run | str | os.PathLike, directory: str | os.PathLike, *, pair_name: str,
                pair_file_hash: str | None, code_revision: str | None, date: str | None = None) -> Path:
    """Store the baseline's trace as the golden of `pair_name` for the environment it was recorded in.

    Returns the environment folder `<directory>/<pair>/<env>/`. Replaces an existing golden there; two
    saves at once are serialised by the pair's lock, and each file is replaced atomically.
    """
    trace = _primary_trace(trace_or_run_dir)
    pair_dir = Path(directory) / _path_component(pair_name, "pair name")
    env = environment_id(trace.header.get(schema.H_RUN) or {})
    env_dir = pair_dir / env
    text = "".join(encode_record(r) + "\n" for r in golden_records(trace))
    # xz, not gzip: digests are incompressible, and on them xz's range coder keeps a 10,000-step golden
    # at ~0.8 MB where gzip -9 takes ~1.0 MB. It stores no time or file name, so the same trace
    # compresses to the same bytes: re-saving is no diff.
    data = lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, filters=_XZ_FILTERS)
    provenance = provenance_from_header(trace.header, pair_file_hash=pair_file_hash, code_revision=code_revision,
                                        date=date)
    index = {"format": GOLDEN_FORMAT, "version": GOLDEN_VERSION, "pair": pair_name, "environment": env,
             "data": DATA_FILE, "sha256": hashlib.sha256(data).hexdigest(), "steps": len(trace.steps),
             "rank": trace.rank, "provenance": provenance.to_json()}
    try:
        env_dir.mkdir(parents=True, exist_ok=True)
        with _locked(pair_dir, exclusive=True):
            mode = _new_file_mode()
            _write_atomic(env_dir / DATA_FILE, data, mode)
            _write_atomic(env_dir / INDEX_FILE, (json.dumps(index, indent=2, sort_keys=True) + "\n").encode(), mode)
    except OSError as exc:
        raise GoldenError(f"{env_dir}: cannot write the golden: {exc.strerror or exc}") from None
    return env_dir


def list_environments(directory: str | os.PathLike, pair: str) -> list[str]:
    """The environments that have a golden of `pair` (a folder holding golden.json), sorted."""
    pair_dir = Path(directory) / _path_component(pair, "pair name")
    if not pair_dir.is_dir():
        return []
    return sorted(p.name for p in pair_dir.iterdir() if (p / INDEX_FILE).is_file())


def load_golden(directory: str | os.PathLike, pair: str, env: str) -> tuple[Trace, Provenance]:
    """The golden trace of `pair` for environment `env` and its provenance, verified against its checksum.

    Raises GoldenMissingError when no golden exists for `env` (naming the environments that have one),
    GoldenError for another golden version, a missing data file, or a checksum mismatch (a truncated or
    hand-edited golden); the trace itself is validated by the trace reader.
    """
    pair_dir = Path(directory) / _path_component(pair, "pair name")
    env_dir = pair_dir / _path_component(env, "environment")
    index_path = env_dir / INDEX_FILE
    if not env_dir.is_dir():
        stored = list_environments(directory, pair)
        where = f"stored environments: {', '.join(stored)}" if stored else f"none stored under {pair_dir}"
        raise GoldenMissingError(f"{env_dir}: no golden of pair {pair!r} for environment {env!r} ({where}); "
                                 f"create it with `parity golden save --pair {pair}`")
    with _locked(pair_dir, exclusive=False):
        index = _read_index(index_path)
        data_path = env_dir / _path_component(index["data"], f"{index_path}: data")
        try:
            data = data_path.read_bytes()
        except FileNotFoundError:
            raise GoldenError(f"{data_path}: missing golden data file (named by {index_path})") from None
        except OSError as exc:
            raise GoldenError(f"{data_path}: cannot read: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != index["sha256"]:
        raise GoldenError(f"{data_path}: checksum mismatch (sha256 {digest[:16]}..., {INDEX_FILE} says "
                          f"{str(index['sha256'])[:16]}...): truncated or edited by hand; save the golden again")
    try:
        text = lzma.decompress(data, format=lzma.FORMAT_XZ).decode("utf-8")
    except (lzma.LZMAError, EOFError, UnicodeDecodeError) as exc:
        raise GoldenError(f"{data_path}: not an xz-compressed trace: {exc}") from None
    trace = parse_trace(_with_derived_values(text, data_path), data_path)
    if len(trace.steps) != index["steps"]:
        raise GoldenError(f"{data_path}: {len(trace.steps)} steps, {INDEX_FILE} says {index['steps']}")
    return trace, Provenance.from_json(index["provenance"], str(index_path))


def _read_index(index_path: Path) -> dict[str, Any]:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GoldenError(f"{index_path}: missing file (every golden folder holds one)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenError(f"{index_path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise GoldenError(f"{index_path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(index, dict) or index.get("format") != GOLDEN_FORMAT:
        raise GoldenError(f"{index_path}: not a parity golden (no \"format\": \"{GOLDEN_FORMAT}\")")
    version = index.get("version")
    if version != GOLDEN_VERSION or isinstance(version, bool):
        raise GoldenError(f"{index_path}: wrong schema: version {version!r} instead of {GOLDEN_VERSION}; "
                          "save the golden again with this parity")
    for key, kind in (("sha256", str), ("steps", int), ("data", str), ("provenance", dict)):
        if not isinstance(index.get(key), kind) or isinstance(index.get(key), bool):
            raise GoldenError(f"{index_path}: {key}: expected {kind.__name__}, got {index.get(key)!r}")
    return index


# -- scalar values ---------------------------------------------------------------------------------
# A recorded loss or gradient norm carries its exact bits and, for readers, its value as a JSON number:
# ~17 random decimal digits per scalar, a fifth of a compressed golden. The value follows from the bits
# (parity/capture/digest.py `float_bits`), so a golden stores it only where decoding the bits does not
# give it back exactly, and the loader puts it back before the trace reader sees the record.

_UNPACK = {"float64": ("<Q", "<d", 16), "float32": ("<I", "<f", 8), "float16": ("<H", "<e", 4)}


def _value_from_bits(scalar: dict[str, Any]) -> Any:
    """The value `float_bits` writes for these bits and dtype, or a sentinel when this dtype is not decoded here."""
    bits, dtype = scalar.get(schema.S_BITS), scalar.get(schema.S_DTYPE)
    if dtype == "bfloat16" and isinstance(bits, str) and len(bits) == 4:
        bits, dtype = bits + "0000", "float32"  # bfloat16 is the upper half of a float32
    if dtype not in _UNPACK or not isinstance(bits, str) or len(bits) != _UNPACK[dtype][2]:
        return _UNDECODED
    int_format, float_format, _ = _UNPACK[dtype]
    try:
        value = struct.unpack(float_format, struct.pack(int_format, int(bits, 16)))[0]
    except (ValueError, struct.error):
        return _UNDECODED
    if value != value:
        return schema.V_NAN
    if value in (float("inf"), float("-inf")):
        return schema.V_INF if value > 0 else schema.V_NEG_INF
    return value


_UNDECODED = object()


def _scalars(step: dict[str, Any]) -> list[dict[str, Any]]:
    """Every recorded scalar of a step: losses, their GradScaler scales, the gradient norm."""
    found = []
    for scalar in [*(step.get(schema.F_LOSSES) or []), step.get(schema.F_GRAD_NORM)]:
        if isinstance(scalar, dict):
            found.append(scalar)
            if isinstance(scalar.get(schema.S_SCALE), dict):
                found.append(scalar[schema.S_SCALE])
    return found


def _without_derived_values(step: dict[str, Any]) -> dict[str, Any]:
    """`step` with each scalar's value left out where the bits give it back exactly (copies what it changes)."""
    step = {**step}
    if isinstance(step.get(schema.F_LOSSES), list):
        step[schema.F_LOSSES] = [_drop_value(s) for s in step[schema.F_LOSSES]]
    if isinstance(step.get(schema.F_GRAD_NORM), dict):
        step[schema.F_GRAD_NORM] = _drop_value(step[schema.F_GRAD_NORM])
    return step


def _drop_value(scalar: Any) -> Any:
    if not isinstance(scalar, dict):
        return scalar
    scalar = {**scalar}
    if isinstance(scalar.get(schema.S_SCALE), dict):
        scalar[schema.S_SCALE] = _drop_value(scalar[schema.S_SCALE])
    value, derived = scalar.get(schema.S_VALUE), _value_from_bits(scalar)
    # Compared as encoded JSON: 0.0 and -0.0, 1 and 1.0 are equal numbers but different records.
    if schema.S_VALUE in scalar and derived is not _UNDECODED and json.dumps(derived) == json.dumps(value):
        del scalar[schema.S_VALUE]
    return scalar


def _with_derived_values(text: str, path: Path) -> str:
    """The golden's JSON Lines with every left-out scalar value put back, ready for the trace reader."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if '"type":"step"' not in line:
            continue
        try:
            step = json.loads(line)
        except json.JSONDecodeError:
            continue  # the reader names the line
        if not isinstance(step, dict) or step.get(schema.F_TYPE) != schema.STEP:
            continue
        for scalar in _scalars(step):
            if schema.S_VALUE not in scalar and (value := _value_from_bits(scalar)) is not _UNDECODED:
                scalar[schema.S_VALUE] = value
        lines[index] = encode_record(step)
    return "\n".join(lines)


#: Beside a golden: the per-step bands `parity calibrate` measured for the same environment.
BANDS_FILE = "bands.json"


def save_bands(bands: "Bands", directory: str | os.PathLike, pair: str, env: str) -> Path:
    """Store calibrated bands with the golden of `pair` for `env` (atomically, under the pair's lock)."""
    pair_dir = Path(directory) / _path_component(pair, "pair name")
    env_dir = pair_dir / _path_component(env, "environment")
    path = env_dir / BANDS_FILE
    try:
        env_dir.mkdir(parents=True, exist_ok=True)
        with _locked(pair_dir, exclusive=True):
            _write_atomic(path, (json.dumps(bands.to_json(), sort_keys=True) + "\n").encode(), _new_file_mode())
    except OSError as exc:
        raise GoldenError(f"{path}: cannot write the bands: {exc.strerror or exc}") from None
    return path


def load_bands(directory: str | os.PathLike, pair: str, env: str) -> "Bands | None":
    """The calibrated bands stored for `pair` and `env`, or None when it was never calibrated there."""
    from parity.checks.bands import BANDS_VERSION, Bands

    path = Path(directory) / _path_component(pair, "pair name") / _path_component(env, "environment") / BANDS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("version") != BANDS_VERSION:
            raise GoldenError(f"{path}: wrong bands version {data.get('version')!r} instead of {BANDS_VERSION}; "
                              "calibrate again with `parity calibrate`")
        return Bands.from_json(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GoldenError(f"{path}: unreadable bands ({exc}); calibrate again with `parity calibrate`") from None
