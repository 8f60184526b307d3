"""Post-conversion SNN calibration (`qcfs-export --snn-calib METHOD --target-T T`): see calibrate.py."""

from qcfs.toolchain.snn_calib.calibrate import AUTO_CANDIDATES, CalibrationReport, calibrate, calibrate_auto
from qcfs.toolchain.snn_calib.methods import METHODS

METHOD_NAMES = (*METHODS, "auto")

__all__ = ["AUTO_CANDIDATES", "METHODS", "METHOD_NAMES", "CalibrationReport", "calibrate", "calibrate_auto"]
