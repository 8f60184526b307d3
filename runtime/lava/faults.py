"""Fault-injection model for the isolation tests (selected by job.json "fault": "raise").

Why it ships in the package: the fault must happen inside a real Lava process-model process, which the
worker subprocess builds; tests cannot inject code there any other way.
"""

from __future__ import annotations

from qcfs.runtime.lava.if_neuron.models import PyIFModelFixed


class PyIFModelRaises(PyIFModelFixed):
    """Behaves like PyIFModelFixed, then raises at step 3."""

    def run_spk(self) -> None:
        if self.time_step >= 3:
            raise RuntimeError("injected fault in IF process model")
        super().run_spk()
