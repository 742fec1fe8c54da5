#!/usr/bin/env bash
# slurm-factory build-compiler: GCC 13.4.0 for Ubuntu 22.04 (jammy), built by the OS compiler with Spack,
# assembled into a relocatable compiler tarball at /opt/slurm-factory-build/gcc-13.4.0-jammy; publish-compiler.sh then pushes it to the binary
# mirror (so `build-slurm --compiler-version 13.4.0` can install it).
set -euo pipefail

ENV_DIR=/opt/slurm-factory/plan
PREFIX=/opt/slurm-factory-build/gcc-13.4.0-jammy
META_DIR=/build/meta
JOBS=${SLURM_FACTORY_JOBS:-$(nproc)}

stage() { printf '==> slurm-factory stage: %s\n' "$1"; }
fail() { printf 'slurm-factory: %s\n' "$1" >&2; exit 1; }
is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

export CCACHE_DIR=/var/cache/slurm-factory/ccache
# shellcheck disable=SC1091
. /opt/spack/share/spack/setup-env.sh

# On a failed install, every failing package's build log and config.log go to the metadata (copied to the host's
# log directory) and to the output.
collect_failure_logs() {
    mkdir -p "$META_DIR/failure"
    { find /tmp/spack-stage \( -name spack-build-out.txt -o -name config.log \) 2>/dev/null || true; } |
    while IFS= read -r log; do
        name=$(echo "$log" | sed -e 's|^/tmp/spack-stage/||' -e 's|/|__|g')
        cp "$log" "$META_DIR/failure/$name"
        printf '\n==> %s (last 40 lines)\n' "$log"
        tail -n 40 "$log"
    done
}

stage spack-setup
rm -rf "$META_DIR" "$PREFIX"
mkdir -p "$META_DIR"
spack --version

stage concretize
# A concretization is stored under a key of what decides it: SLURM_FACTORY_CONCRETIZATION_INPUTS (the plan's
# digest of the environment's specs, packages, concretizer and repos, the overlay package and its patches),
# SLURM_FACTORY_TOOLCHAIN_IMAGE_ID (the toolchain image this build runs in: Spack, its builtin packages, the OS)
# and the externals this image detected. The same key again (a rebuild from the buildcache) installs the stored
# spack.lock instead of solving again; any changed input is another key. --no-cache solves afresh and replaces
# the stored lock; one that does not parse is solved again too.
concretization_key=$(
    {
        printf '%s\n' "$SLURM_FACTORY_CONCRETIZATION_INPUTS" "${SLURM_FACTORY_TOOLCHAIN_IMAGE_ID:-}"
        if [ -f "$ENV_DIR/externals.yaml" ]; then cat "$ENV_DIR/externals.yaml"; fi
    } | sha256sum | cut -c1-32
)
stored_concretization=/var/cache/slurm-factory/concretizations/$concretization_key.lock
lock_parses() { "$SPACK_PYTHON" -c 'import json, sys; json.load(open(sys.argv[1]))["concrete_specs"]' "$1" 2>/dev/null; }
if [ -s "$stored_concretization" ] && lock_parses "$stored_concretization"; then
    cp "$stored_concretization" "$ENV_DIR/spack.lock"
    echo "==> reusing concretization $concretization_key ($stored_concretization)"
else
    spack -e "$ENV_DIR" concretize --force
fi
if ! cmp -s "$ENV_DIR/spack.lock" "$stored_concretization"; then
    # A name of its own in the store (builds of one key may run at once), then an atomic rename.
    stored_tmp=$(mktemp "/var/cache/slurm-factory/concretizations/.$concretization_key.XXXXXX")
    cp "$ENV_DIR/spack.lock" "$stored_tmp"
    mv -f "$stored_tmp" "$stored_concretization"
fi
echo "$concretization_key" > "$META_DIR/concretization-key.txt"
cp "$ENV_DIR/spack.lock" "$META_DIR/spack.lock"

stage install
if ! spack -e "$ENV_DIR" install --jobs "$JOBS" --use-buildcache auto --fail-fast; then
    collect_failure_logs
    fail "spack install failed; the failing packages' logs are above and in the build log directory (concretization $concretization_key; --no-cache solves it again)"
fi

stage assemble
spack -e "$ENV_DIR" env view regenerate
mkdir -p "$PREFIX"
cp -a "$(readlink -f /opt/slurm-factory/spack/view)/." "$PREFIX/"
rm -rf "$PREFIX/.spack"
find "$PREFIX" -name '*.la' -delete
INSTALL_PATHS=(/opt/slurm-factory/spack/view "$(readlink -f /opt/slurm-factory/spack/view)")
stage relocate-text
# pkg-config files compute the tree from their own directory (${pcfiledir}); scripts whose interpreter is in the
# tree find it on PATH (the modulefile puts <root>/bin there). Anything else that names an install path is reported
# by `--verify`'s static check.
for view_path in "${INSTALL_PATHS[@]}"; do
    while IFS= read -r -d '' file; do
        relative=$(realpath --relative-to="$(dirname "$file")" "$PREFIX")
        sed -i "s|$view_path|\${pcfiledir}/$relative|g" "$file"
    done < <(grep -rlIZF --include='*.pc' "$view_path" "$PREFIX" || true)
    while IFS= read -r -d '' file; do
        sed -i -e "1s|^#! *$view_path/bin/\([^ ]*\)\$|#!/usr/bin/env \1|" \
               -e "1s|^#! *$view_path/bin/\([^ ]*\) \(.*\)\$|#!/usr/bin/env -S \1 \2|" "$file"
    done < <(grep -rlIZ "^#! *$view_path/bin/" "$PREFIX" || true)
done

stage relocate
# Every ELF file finds the tree's libraries relative to itself: $ORIGIN/<path to each library directory>.
: > "$META_DIR/elf-files.txt"
while IFS= read -r -d '' file; do
    is_elf "$file" || continue
    # Object files (crtbegin.o, ...) and static binaries have no dynamic section: nothing to relocate.
    patchelf --print-rpath "$file" >/dev/null 2>&1 || continue
    dir=$(dirname "$file")
    runpath=""
    for libdir in lib64 lib; do
        [ -d "$PREFIX/$libdir" ] || continue
        runpath="${runpath:+$runpath:}\$ORIGIN/$(realpath --relative-to="$dir" "$PREFIX/$libdir")"
    done
    patchelf --set-rpath "$runpath" "$file"
    printf '%s\n' "${file#"$PREFIX"/}" >> "$META_DIR/elf-files.txt"
done < <(find "$PREFIX" -path "$PREFIX/lib/debug" -prune -o -type f -print0 | sort -z)

stage inventory
"$PREFIX/bin/gcc" --version | head -n 1 > "$META_DIR/compiler.txt"
spack -e "$ENV_DIR" find --format '{name}	{version}	{/hash:7}' > "$META_DIR/spack-packages.tsv"
stage done
