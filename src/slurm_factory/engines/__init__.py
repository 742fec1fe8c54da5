"""Build engines: each runs a plan's build container and hands back the installed tree and its build metadata."""
