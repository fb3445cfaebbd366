"""Environment ids and provenance of a golden: what bitwise results depend on, read from a trace header."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from parity.exceptions import GoldenError
from parity.trace import schema

# Header meta keys this module reads beyond the schema's RUN_* keys: capture writes them into every trace
# header (parity.capture.metadata.environment_facts); an environment id is built from a header only, never
# from the machine that happens to read the trace.
from parity.capture.metadata import META_CPU_CAPABILITY, META_CUDNN, META_MACHINE  # noqa: E402
from parity.capture.metadata import environment_facts as read_environment_facts  # noqa: E402,F401

#: CPU architectures as `platform.platform()` spells them, mapped to one name per instruction set.
_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64", "i686": "i686", "i386": "i686"}
_ARCH_TOKEN = re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(_ARCHES, key=len, reverse=True)) + r")(?![a-z0-9])")


def _major_minor(version: Any) -> str | None:
    match = re.match(r"(\d+)\.(\d+)", str(version)) if version else None
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def cpu_arch(header_meta: dict[str, Any]) -> str | None:
    """The CPU architecture: the header's `machine`, else the one named in its `platform` string, else None."""
    for text in (header_meta.get(META_MACHINE), header_meta.get(schema.RUN_PLATFORM)):
        match = _ARCH_TOKEN.search(str(text).lower()) if text else None
        if match:
            return _ARCHES[match.group(1)]
    return None


def _threads(header_meta: dict[str, Any]) -> int | None:
    numerics = header_meta.get(schema.RUN_NUMERICS)
    threads = numerics.get("num_threads") if isinstance(numerics, dict) else None
    return threads if isinstance(threads, int) and not isinstance(threads, bool) else None


def environment_id(header_meta: dict[str, Any]) -> str:
    """A folder name for the environment a trace was recorded in, e.g. `cpu-x86_64-avx2-torch2.13-threads1`
    or `cuda-h200-torch2.11-cuda12.8`.

    Only what bitwise results depend on: device kind and name, CPU architecture and vector capability
    (CPU runs), torch major.minor, CUDA and cuDNN (GPU runs), the intra-op thread count (CPU runs; a
    GPU's reductions do not depend on it). A fact the header does not record is left out, so two ids
    are comparable only when both come from trace headers.
    """
    if not isinstance(header_meta, dict):
        raise GoldenError(f"trace header meta: expected an object, got {type(header_meta).__name__}")
    device, torch_version = header_meta.get(schema.RUN_DEVICE), _major_minor(header_meta.get(schema.RUN_TORCH))
    if not isinstance(device, str) or not device or torch_version is None:
        missing = "device" if not isinstance(device, str) or not device else "torch"
        raise GoldenError(f"trace header meta: no {missing!r}; cannot name the environment (re-record with this parity)")
    if device == "cpu":
        capability = header_meta.get(META_CPU_CAPABILITY)
        parts = ["cpu", cpu_arch(header_meta), _slug(capability) if isinstance(capability, str) else None,
                 f"torch{torch_version}"]
        threads = _threads(header_meta)
        parts.append(f"threads{threads}" if threads is not None else None)
    else:
        cuda = _major_minor(header_meta.get(schema.RUN_CUDA))
        name = re.sub(r"^nvidia[\s-]+", "", device.strip(), flags=re.IGNORECASE)
        cudnn = header_meta.get(META_CUDNN)
        parts = ["cuda" if cuda else "gpu", _slug(name), f"torch{torch_version}", f"cuda{cuda}" if cuda else None,
                 f"cudnn{cudnn}" if cudnn else None]
    return "-".join(p for p in parts if p)


@dataclass(frozen=True)
class Provenance:
    """Where a golden (or a run compared with one) came from.

    Built from a trace header plus what only the caller knows (pair file hash, code revision); it
    never reads the current machine. Fields the header does not record are None.
    """

    torch: str | None = None
    cuda: str | None = None
    cudnn: Any = None
    device: str | None = None
    cpu_arch: str | None = None
    cpu_capability: str | None = None
    threads: int | None = None
    deterministic: dict[str, Any] = field(default_factory=dict)
    """parity's `--deterministic`, torch's deterministic algorithms, cuDNN's deterministic and benchmark."""
    trace_schema: int | None = None
    """The trace schema version the golden's data was recorded with."""
    digest: str | None = None
    """The digest algorithm of batch/params/optimizer-state digests (only comparable within one)."""
    pair_file_hash: str | None = None
    code_revision: str | None = None
    date: str | None = None
    """UTC time of the save, ISO 8601."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> Provenance:
        if not isinstance(data, dict):
            raise GoldenError(f"{where}: provenance: expected an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GoldenError(f"{where}: provenance: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        if not isinstance(data.get("deterministic", {}), dict):
            raise GoldenError(f"{where}: provenance.deterministic: expected an object")
        return cls(**data)


#: Fields that describe the golden itself and never make a run's numerics differ.
_RECORD_FIELDS = ("pair_file_hash", "code_revision", "date")
#: Fields compared by `provenance_mismatches`: the ones bitwise results depend on.
ENVIRONMENT_FIELDS = tuple(f.name for f in fields(Provenance) if f.name not in _RECORD_FIELDS)


def provenance_from_header(header: dict[str, Any], *, pair_file_hash: str | None = None,
                           code_revision: str | None = None, date: str | None = None) -> Provenance:
    """The provenance of the run whose trace starts with `header`; `date` defaults to now (UTC)."""
    meta = header.get(schema.H_RUN) if isinstance(header.get(schema.H_RUN), dict) else {}
    numerics = meta.get(schema.RUN_NUMERICS) if isinstance(meta.get(schema.RUN_NUMERICS), dict) else {}
    deterministic = {"parity": header.get(schema.H_DETERMINISTIC),
                     "deterministic_algorithms": numerics.get("deterministic_algorithms"),
                     "cudnn.deterministic": numerics.get("cudnn.deterministic"),
                     "cudnn.benchmark": numerics.get("cudnn.benchmark")}
    return Provenance(
        torch=meta.get(schema.RUN_TORCH), cuda=meta.get(schema.RUN_CUDA), cudnn=meta.get(META_CUDNN),
        device=meta.get(schema.RUN_DEVICE),
        cpu_arch=cpu_arch(meta), cpu_capability=meta.get(META_CPU_CAPABILITY), threads=_threads(meta),
        deterministic=deterministic, trace_schema=header.get(schema.H_VERSION), digest=header.get(schema.H_DIGEST),
        pair_file_hash=pair_file_hash, code_revision=code_revision,
        date=date or datetime.now(timezone.utc).isoformat(timespec="seconds"))


def provenance_mismatches(stored: Provenance, current: Provenance,
                          compared: tuple[str, ...] = ENVIRONMENT_FIELDS) -> list[str]:
    """One line per differing field, e.g. "torch: golden 2.13.0, this run 2.12.1"; empty when they match.

    A field recorded on one side only differs: an unknown value is never assumed equal. Deterministic
    flags are named one by one ("deterministic.cudnn.benchmark").
    """
    lines = []
    for name in compared:
        old, new = getattr(stored, name), getattr(current, name)
        if name == "deterministic":
            for flag in sorted(set(old) | set(new)):
                if old.get(flag) != new.get(flag):
                    lines.append(f"deterministic.{flag}: golden {_shown(old.get(flag))}, this run {_shown(new.get(flag))}")
        elif old != new:
            lines.append(f"{name}: golden {_shown(old)}, this run {_shown(new)}")
    return lines


def _shown(value: Any) -> str:
    return "not recorded" if value is None else str(value)
