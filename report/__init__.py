"""What users see: operation counts and energy estimates (energy), figures (plots) and the report folder
(writer.write_report). Submodules are imported explicitly so that `qcfs.report.energy` never pulls in
matplotlib."""
