"""Framework shims (HF Trainer, accelerate, TRL, Lightning), installed lazily when a framework is imported.

Importing transformers or lightning costs seconds and changes nothing for a trainer that never uses
them, so capture start imports no framework. Instead `install_shims` puts one finder at the front of
`sys.meta_path`; when a watched module finishes executing (or at once, if it was already imported),
the shim registered for it is installed on that module.

Interface of a shim (one module per framework in this package, found by listing the package; no
registry to edit):

    #: Module names whose first import installs this shim, e.g. ("accelerate.accelerator",).
    TARGETS: tuple[str, ...]

    def install(patches: TorchPatches, module: types.ModuleType) -> None:
        '''Patch `module` (already executed) through `patches._patch(owner, name, make)`, so that
        `patches.uninstall()` restores every original; report through `patches.recorder` and the
        existing `patches` entry points; wrap calls in `patches._outermost(key, ...)` where a
        framework call nests a torch call that is already instrumented.'''

`install` is called once per (capture, target module), after the module executed, inside the
importing thread. It must not import other frameworks, must never change what a wrapped call
computes, and must not raise: a failure is recorded as a `capture_error` meta record and the import
goes on. A shim module itself must import only the stdlib, torch and parity at its top level.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import pkgutil
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # patches imports this package: no import cycle at run time
    from parity.capture.patches import TorchPatches


def _shim_modules() -> list[types.ModuleType]:
    """Every shim of this package, in name order."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


class _InstallAfterExec(importlib.abc.Loader):
    """Runs the real loader, then the shims watching this module. Everything else is delegated."""

    def __init__(self, loader: importlib.abc.Loader, after: Callable[[types.ModuleType], None]) -> None:
        self._loader = loader
        self._after = after

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ... for tracebacks and inspect
        return getattr(self._loader, name)


class ShimFinder(importlib.abc.MetaPathFinder):
    """A meta path finder that never finds anything itself: it wraps the loader of watched modules.

    It asks the finders behind it for the spec, so every import resolves exactly as without it.
    """

    def __init__(self, patches: "TorchPatches", shims: Sequence[types.ModuleType]) -> None:
        self.patches = patches
        self._watch: dict[str, list[types.ModuleType]] = {}
        for shim in shims:
            for target in getattr(shim, "TARGETS", ()):
                self._watch.setdefault(target, []).append(shim)
        self._installed: set[tuple[str, str]] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._watch:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _InstallAfterExec(spec.loader, self.install_for)
                return spec
        return None

    def install_for(self, module: types.ModuleType) -> None:
        """Install every shim watching `module` that is not installed on it yet."""
        for shim in self._watch.get(module.__name__, ()):
            key = (shim.__name__, module.__name__)
            if key in self._installed:
                continue
            self._installed.add(key)
            try:
                shim.install(self.patches, module)
            except Exception:
                self.patches.recorder.capture_failed(f"{shim.__name__}.install")

    def start(self) -> "ShimFinder":
        sys.meta_path.insert(0, self)
        for name in list(self._watch):
            module = sys.modules.get(name)
            if module is not None:
                self.install_for(module)
        return self

    def stop(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def install_shims(patches: "TorchPatches") -> ShimFinder:
    """Watch for the frameworks' modules; `stop()` the returned finder before uninstalling the patches."""
    return ShimFinder(patches, _shim_modules()).start()
