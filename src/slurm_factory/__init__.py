"""slurm-factory: turn "Slurm X.Y for OS Z" into a relocatable, verified, signed artifact."""

__version__ = "0.1.0"
