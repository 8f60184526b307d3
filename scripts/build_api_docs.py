"""Build the API reference (HTML, pdoc) from the public modules' docstrings; any pdoc warning is an error.

    .venv/bin/python scripts/build_api_docs.py [OUT_DIR]      (default out/api; open OUT_DIR/index.html)

Only the public surface is documented (qcfs/__init__.py's docstring lists it); the internal packages are not.
tests/test_api_docs.py runs this build into a temporary folder on every test run.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

# pdoc module specs: the package page, no sub-pages ("!" = exclude by regex), then the public modules
MODULES = ("qcfs", r"!qcfs\..*", "qcfs.api", "qcfs.runtime.result", "qcfs.intnet", "qcfs.simulate", "qcfs.errors")


def build(out_dir: Path) -> list[Path]:
    """Write the HTML reference into `out_dir`; raise RuntimeError listing pdoc's warnings, if any."""
    import pdoc
    import pdoc.render

    for name in (m for m in MODULES if not m.startswith("!")):
        importlib.import_module(name)  # import-time warnings of dependencies are not the reference's
    pdoc.render.configure(docformat="markdown", show_source=False, footer_text="qcfs API reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*MODULES, output_directory=Path(out_dir))
    if caught:
        raise RuntimeError("pdoc warnings:\n" + "\n".join(f"{w.category.__name__}: {w.message}" for w in caught))
    return sorted(Path(out_dir).rglob("*.html"))


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/api")
    pages = build(out)
    print(f"wrote {len(pages)} pages to {out} (open {out / 'index.html'})")
