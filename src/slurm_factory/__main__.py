"""`python -m slurm_factory` runs the CLI."""

from slurm_factory.cli import main

main()
