"""The pass protocol: one small class per rewrite, the identity it preserves in its docstring's first line."""

from __future__ import annotations

from qcfs.toolchain.graph import Graph


class Pass:
    """(base class) Subclasses state, in the docstring's first paragraph, the identity they preserve."""

    #: run again until it reports no change (for local rewrites that enable each other)
    fixpoint: bool = False

    def __init__(self) -> None:
        self.changes: list[str] = []

    @property
    def name(self) -> str:
        return type(self).__name__

    @classmethod
    def preserves(cls) -> str:
        """The docstring's first paragraph on one line."""
        para = (cls.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(line.strip() for line in para.splitlines())

    def note(self, what: str) -> None:
        """Record one change, shown by --show-passes."""
        self.changes.append(what)

    def apply(self, graph: Graph) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def run(self, graph: Graph) -> bool:
        """apply() until fixpoint when `fixpoint`, else once; True when anything changed."""
        changed = self.apply(graph)
        if self.fixpoint:
            again = changed
            while again:
                again = self.apply(graph)
        return changed
