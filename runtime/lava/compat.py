"""Make lava-nc 0.10.0 importable on Python 3.11 without touching site-packages.

Why: lava/magma/compiler/var_model.py declares dataclass fields whose default is a `ByteEncoder()`
instance. Python 3.11 rejects any unhashable dataclass default ("mutable default ... use
default_factory"); 3.10 only rejected list/dict/set. Every Lava run imports that module, so `import lava`
of anything useful fails.

Fix (least fragile of the options we tried): a meta-path finder that, for that one module only, loads
the original source, marks `ByteEncoder` as `@dataclass(unsafe_hash=True)` and executes it. A hashable
class passes 3.11's check and the fields keep exactly the 3.10 behaviour (one shared default instance),
so nothing else in Lava changes. If a future Lava no longer contains the pattern, the source is executed
unchanged. No bytecode cache is written for the patched module (the original .pyc stays valid for the
original source).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import multiprocessing as mp
import sys
from types import ModuleType
from typing import Iterator

from qcfs.errors import BackendError

PATCHED_MODULE = "lava.magma.compiler.var_model"
_ORIGINAL = "@dataclass\nclass ByteEncoder:"
_PATCHED = "@dataclass(unsafe_hash=True)\nclass ByteEncoder:"
NOT_INSTALLED = "Lava is not installed: run scripts/setup_env.sh / make setup"


def patch_source(source: str) -> str:
    """The var_model source with ByteEncoder made hashable (unchanged if the pattern is absent)."""
    return source.replace(_ORIGINAL, _PATCHED, 1)


class _PatchedLoader(importlib.machinery.SourceFileLoader):
    """Source loader that applies `patch_source` and bypasses the bytecode cache."""

    def get_code(self, fullname: str):  # type: ignore[override]
        source = self.get_data(self.path).decode("utf-8")
        return compile(patch_source(source), self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    """Finds only PATCHED_MODULE and hands it to `_PatchedLoader`."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname != PATCHED_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None
        spec.loader = _PatchedLoader(fullname, spec.origin)
        return spec


_FINDER = _VarModelFinder()


def install_shim() -> None:
    """Put the finder first on sys.meta_path (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def lava_available() -> bool:
    """True when lava-nc is installed (does not import it)."""
    return importlib.util.find_spec("lava") is not None and \
        importlib.util.find_spec("lava.magma") is not None


@contextlib.contextmanager
def _tolerate_same_start_method() -> Iterator[None]:
    """Lava's message infrastructure calls mp.set_start_method('fork') when imported, which raises if this
    process already fixed its start method (any earlier multiprocessing use does). When it is already
    'fork' there is nothing to change, so that call becomes a no-op; another method stays a real error."""
    original = mp.set_start_method

    def tolerant(method: str | None, force: bool = False) -> None:
        if not force and method is not None and mp.get_start_method(allow_none=True) == method:
            return
        original(method, force=force)

    mp.set_start_method = tolerant  # type: ignore[assignment]
    try:
        yield
    finally:
        mp.set_start_method = original  # type: ignore[assignment]


def ensure_lava() -> ModuleType:
    """Install the shim and import Lava's core; BackendError (one line) when lava-nc is absent."""
    if not lava_available():
        raise BackendError(NOT_INSTALLED)
    install_shim()
    try:
        with _tolerate_same_start_method():
            import lava.magma.compiler.var_model  # noqa: F401  (the module the shim patches)
            import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
            import lava.magma.core.run_configs  # noqa: F401
    except ImportError as err:
        raise BackendError(f"{NOT_INSTALLED} ({err})") from None
    except RuntimeError as err:  # start method already fixed to something other than fork
        raise BackendError(f"Lava needs the 'fork' start method: {err}") from None
    import lava

    return lava


# --- lava-dl (netx) -----------------------------------------------------------------------------------
NETX_NOT_INSTALLED = "lava-dl (netx) is not installed: run scripts/setup_env.sh / make setup"
#: modules lava-dl imports at `import lava.lib.dl.netx` that netx never uses (object detection, vision I/O);
#: lava-dl is installed with --no-deps, so they are usually absent.
OPTIONAL_NETX_IMPORTS = ("cv2", "torchvision")
OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"


def _stub(name: str) -> ModuleType:
    """An empty module that says what it is; any attribute use fails loudly (AttributeError)."""
    mod = ModuleType(name)
    mod.__doc__ = f"qcfs import stub: {name} is not installed and netx does not need it"
    mod.__qcfs_stub__ = True  # type: ignore[attr-defined]
    return mod


def install_netx_stubs() -> list[str]:
    """Put stubs into sys.modules for the optional modules lava-dl imports but netx never calls (only
    where the real module is absent; never touches site-packages). Returns the stubbed names."""
    stubbed = []
    for name in OPTIONAL_NETX_IMPORTS:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = _stub(name)
            stubbed.append(name)
    if stubbed and OBJECT_DETECTION not in sys.modules:  # slayer/__init__ imports it; it needs cv2
        sys.modules[OBJECT_DETECTION] = _stub(OBJECT_DETECTION)
        stubbed.append(OBJECT_DETECTION)
    return stubbed


def netx_available() -> bool:
    """True when lava-dl is installed (does not import it)."""
    if not lava_available():
        return False
    try:
        return importlib.util.find_spec("lava.lib.dl") is not None
    except ModuleNotFoundError:
        return False


def ensure_netx() -> ModuleType:
    """Lava (ensure_lava) plus the stubs, then `lava.lib.dl.netx`; BackendError (one line) when absent."""
    ensure_lava()
    if not netx_available():
        raise BackendError(NETX_NOT_INSTALLED)
    install_netx_stubs()
    try:
        import lava.lib.dl.netx as netx
    except ImportError as err:
        raise BackendError(f"{NETX_NOT_INSTALLED} ({err})") from None
    return netx
