"""After tracking: reference-bead drift, extension, force calibration, whole-store analysis."""
