#!/usr/bin/env bash
# slurm-factory Spack build: Slurm 24.11.5 and its whole dependency stack on Ubuntu 22.04 (jammy).
# Runs inside the Spack toolchain container. The environment (/opt/slurm-factory/plan/spack.yaml) is generated data;
# this script concretizes and installs it, then assembles the same artifact tree as the native engine:
# the view copied into /opt/slurm-factory-build/slurm-24.11.5-jammy, $ORIGIN-relative RPATHs, Spack's Lmod tree under modules/spack.
set -euo pipefail

ENV_DIR=/opt/slurm-factory/plan
PREFIX=/opt/slurm-factory-build/slurm-24.11.5-jammy
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
# Reproducible builds: tools that honour it write the release date instead of the time of the build.
export SOURCE_DATE_EPOCH=1746576000

stage externals
# The packages taken from the toolchain OS (--os-packages), registered with the versions this image really has.
spack -e "$ENV_DIR" python "$ENV_DIR/detect_externals.py" "$ENV_DIR/os-externals.json" \
    "$ENV_DIR/externals.yaml" "$META_DIR/os-externals.json"

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
if ! spack -e "$ENV_DIR" install --jobs "$JOBS" --use-buildcache never --fail-fast; then
    collect_failure_logs
    fail "spack install failed; the failing packages' logs are above and in the build log directory (concretization $concretization_key; --no-cache solves it again)"
fi

stage modules
spack -e "$ENV_DIR" env view regenerate
spack -e "$ENV_DIR" module lmod refresh --delete-tree --yes-to-all

stage assemble
mkdir -p "$PREFIX"
cp -a "$(readlink -f /opt/slurm-factory/spack/view)/." "$PREFIX/"
rm -rf "$PREFIX/.spack"
mkdir -p "$PREFIX/modules/spack"
cp -a /opt/slurm-factory/spack/modules/. "$PREFIX/modules/spack/"
# The index maps hashes to module paths in this container; only `spack module ... loads` reads it.
rm -f "$PREFIX/modules/spack/module-index.yaml"
# Spack's module files name the view and (hierarchy) the module root; make each compute the tree's root from its
# own location instead. Their "Configure options" line names the install tree: the manifest records the options. The
# line naming the time they were written goes (a reproducible tree).
find "$PREFIX/modules/spack" -name '*.lua' -print0 | xargs -0 -r sed -i \
    -e '1i local slurm_factory_root = myFileName():match("^(.*)/modules/spack/")' \
    -e '/^-- Module file created by spack .* on [0-9-]* [0-9:.]*$/d' \
    -e '/^whatis(\[\[Configure options : /d' \
    -e 's|"/opt/slurm-factory/spack/view|slurm_factory_root .. "|g' \
    -e 's|"/opt/slurm-factory/spack/modules|slurm_factory_root .. "/modules/spack|g'
# libtool archives name the install tree; static archives are not what a runtime tree links (Slurm's are shared).
find "$PREFIX" \( -name '*.la' -o -name '*.a' \) -delete
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
printf '%s\n' pmi2 pmi pam pam_slurm_adopt sgather sjobexit nss_slurm sjstat > "$META_DIR/contribs.txt"

# The PAM loaders are compiled with the image's GCC and the release flags Slurm was built with; they need libc only.
PLAN_DIR=/opt/slurm-factory/plan
CC=gcc
CPPFLAGS='-D_FORTIFY_SOURCE=2'
CFLAGS='-g -O2 -fstack-protector-strong -fstack-clash-protection -Wformat -Werror=format-security -fcf-protection'
HARDENING_LDFLAGS='-Wl,--build-id=sha1 -Wl,-z,lazy -Wl,-z,relro'
stage pam-loader
# A PAM directory links to lib/security/<module>.so; the module itself moves to lib/security/real/, where its
# $ORIGIN-relative RUNPATH finds libslurm again.
mkdir -p "$PREFIX/lib/security/real"
for module in "$PREFIX"/lib/security/*.so; do
    name=$(basename "$module")
    mv "$module" "$PREFIX/lib/security/real/$name"
    # shellcheck disable=SC2086
    $CC $CPPFLAGS $CFLAGS -fPIC -shared -DREAL_MODULE="\"real/$name\"" -o "$module" \
        "$PLAN_DIR/pam_module_loader.c" $HARDENING_LDFLAGS -ldl
done

stage split-debug
# Each ELF file with debug information keeps its build id, loses its symbols and gets a .gnu_debuglink; the symbols
# go to lib/debug/.build-id/<first two hex digits>/<the rest>.debug, the layout gdb and debuginfod read. The artifact
# writer moves lib/debug into the -debug companion tarball. Symbols of the dynamic table stay: Slurm's plugins
# resolve what they need from the program that loads them.
OBJCOPY=objcopy
STRIP=strip
DEBUG_ROOT="$PREFIX/lib/debug/.build-id"
: > "$META_DIR/debug-files.tsv"
while IFS= read -r -d '' file; do
    is_elf "$file" || continue
    sections=$(readelf --section-headers --wide "$file" 2>/dev/null) || continue
    grep -q ' \.dynamic ' <<< "$sections" || continue
    grep -q ' \.debug_info ' <<< "$sections" || continue
    build_id=$(readelf --notes "$file" | awk '/Build ID:/ {print $3; exit}')
    [ -n "$build_id" ] || fail "${file#"$PREFIX"/} has no build id (the linker flags have --build-id)"
    debug_file="$DEBUG_ROOT/${build_id:0:2}/${build_id:2}.debug"
    mkdir -p "$(dirname "$debug_file")"
    "$OBJCOPY" --only-keep-debug "$file" "$debug_file"
    chmod 0644 "$debug_file"
    "$STRIP" --strip-unneeded --remove-section=.comment "$file"
    "$OBJCOPY" --add-gnu-debuglink="$debug_file" "$file"
    printf '%s\t%s\n' "${file#"$PREFIX"/}" "$build_id" >> "$META_DIR/debug-files.tsv"
done < <(find "$PREFIX" -path "$PREFIX/lib/debug" -prune -o -type f -print0 | sort -z)
[ -s "$META_DIR/debug-files.tsv" ] || fail "no ELF file had debug information to split"

stage relocate
# Every ELF file finds the tree's libraries relative to itself: $ORIGIN/<path to each library directory>.
: > "$META_DIR/elf-files.txt"
while IFS= read -r -d '' file; do
    is_elf "$file" || continue
    # Object files (crtbegin.o, ...) and static binaries have no dynamic section: nothing to relocate.
    patchelf --print-rpath "$file" >/dev/null 2>&1 || continue
    dir=$(dirname "$file")
    runpath=""
    for libdir in lib/slurm lib lib64; do
        [ -d "$PREFIX/$libdir" ] || continue
        runpath="${runpath:+$runpath:}\$ORIGIN/$(realpath --relative-to="$dir" "$PREFIX/$libdir")"
    done
    patchelf --set-rpath "$runpath" "$file"
    printf '%s\n' "${file#"$PREFIX"/}" >> "$META_DIR/elf-files.txt"
done < <(find "$PREFIX" -path "$PREFIX/lib/debug" -prune -o -type f -print0 | sort -z)

stage inventory
gcc --version | head -n 1 > "$META_DIR/compiler.txt"
missing=0
: > "$META_DIR/libraries.txt"
while IFS= read -r relative; do
    if ldd "$PREFIX/$relative" | grep -q 'not found'; then
        printf 'unresolved library in %s:\n' "$relative" >&2
        ldd "$PREFIX/$relative" | grep 'not found' >&2
        missing=1
    fi
    ldd "$PREFIX/$relative" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' >> "$META_DIR/libraries.txt"
done < "$META_DIR/elf-files.txt"
[ "$missing" -eq 0 ] || fail "some ELF files do not find their libraries inside the build prefix"
# GPU vendor libraries (NVML, ROCm SMI, CUDA) come from the host's driver at run time: never a package dependency.
vendor='/lib(nvidia-ml|rocm_smi64|cuda)[.]so'
sort -u "$META_DIR/libraries.txt" | grep -v "^$PREFIX/" | grep -Ev "$vendor" > "$META_DIR/system-libraries.txt" || true
sort -u "$META_DIR/libraries.txt" | grep -E "$vendor" | xargs -r -n1 basename > "$META_DIR/host-libraries.txt" || true
# The OS packages that own the system libraries the tree links against: the artifact's runtime dependencies.
while IFS= read -r library; do
    real=$(readlink -f "$library")
    owner=$(dpkg-query --search "$real" 2>/dev/null || dpkg-query --search "$library" 2>/dev/null) || continue
    package=${owner%%:*}
    dpkg-query --show --showformat='${Package}\t${Version}\n' "$package"
done < "$META_DIR/system-libraries.txt" | sort -u > "$META_DIR/runtime-packages.tsv"
# Every OS package a host of this tree needs (the linked ones and those it loads or runs without linking: munge's
# daemon, libpmix), with its version and license where the package manager records them, for the SBOM.
{
    cut -f1 "$META_DIR/runtime-packages.tsv"
    printf '%s\n' munge
} | sort -u | while IFS= read -r package; do
    [ -n "$package" ] || continue
    version=$(dpkg-query --show --showformat='${Version}' "$package" 2>/dev/null) || continue
    # DEP-5 copyright files name the license of their first Files: paragraph first.
    license=$(sed -n 's/^License: *\([^ ]*\).*/\1/p' "/usr/share/doc/$package/copyright" 2>/dev/null | head -n 1)
    printf '%s\t%s\t%s\n' "$package" "$version" "$license"
done > "$META_DIR/os-inventory.tsv"
(cd "$PREFIX/lib/slurm" && ls -1 *.so) > "$META_DIR/plugins.txt"
"$PREFIX/sbin/slurmd" -V > "$META_DIR/slurmd-version.txt"
tr ' ' '\n' < "$(spack -e "$ENV_DIR" location -i slurm)/.spack/spack-configure-args.txt" > "$META_DIR/configure-options.txt"
spack -e "$ENV_DIR" find --format '{name}	{version}	{/hash:7}' > "$META_DIR/spack-packages.tsv"
spack -e "$ENV_DIR" find --format '{name}@{version}{variants} {/hash:7}' > "$META_DIR/spack-specs.txt"
stage done
