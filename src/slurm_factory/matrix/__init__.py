"""`build-matrix`: many cells (every Slurm series, toolchain, GPU flag and arch) on this host's Docker engine."""
