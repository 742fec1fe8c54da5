"""Native packages (`--package deb|all`): Slurm built for the toolchain OS's FHS layout and packaged as SchedMD's
own `debian/` splits it, published into a signed apt repository and verified by installing it with apt.

- `versions`: how a package version is spelled and why it sorts right;
- `deb`: the plan (pure rendering of the `debian/` directory, the build script and the packaging image);
- `store`: the stored package set of one build id, and its contract name in `builds/`;
- `apt_repository`: a signed apt repository in a file:// mirror.
"""
