"""Post-conversion SNN calibration (`qcfs-export --snn-calib METHOD --target-T T`): see calibrate.py."""

from qcfs.toolchain.snn_calib.calibrate import CalibrationReport, calibrate
from qcfs.toolchain.snn_calib.methods import METHODS

__all__ = ["METHODS", "CalibrationReport", "calibrate"]
