#!/usr/bin/env bash
# slurm-factory native build: Slurm 24.11.5 on Ubuntu 26.04 (resolute).
# Runs inside the toolchain container. Slurm's own configure/make links against the OS's packaged libraries; the
# result is installed into /opt/slurm-factory-build/slurm-24.11.5-resolute with $ORIGIN-relative RPATHs so it can be unpacked anywhere.
set -euo pipefail

SOURCE=/var/cache/slurm-factory/sources/_source-cache/archive/e1/e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332.tar.gz
PREFIX=/opt/slurm-factory-build/slurm-24.11.5-resolute
BUILD_DIR=/build/src
META_DIR=/build/meta
JOBS=${SLURM_FACTORY_JOBS:-$(nproc)}
# Reproducible builds: every timestamp a tool writes is the release date, and no object names the build directory
# (debug info, __FILE__): the same request gives the same bytes on another day, host or user.
export SOURCE_DATE_EPOCH=1746576000
export TZ=UTC LC_ALL=C.UTF-8

stage() { printf '==> slurm-factory stage: %s\n' "$1"; }
fail() { printf 'slurm-factory: %s\n' "$1" >&2; exit 1; }

stage verify-source
echo "e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332  $SOURCE" | sha256sum --check --strict - || fail "source tarball does not match sha256 e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332"

stage unpack
rm -rf "$BUILD_DIR" "$META_DIR" "$PREFIX"
mkdir -p "$BUILD_DIR" "$META_DIR" "$PREFIX/lib/security"
tar -xzf "$SOURCE" -C "$BUILD_DIR" --strip-components=1

stage configure
# ccache lives in a mounted cache directory; `--no-cache` sets CCACHE_DISABLE=1 in the container environment.
export CCACHE_DIR=/var/cache/slurm-factory/ccache
export CCACHE_BASEDIR="$BUILD_DIR"
export CCACHE_COMPILERCHECK=content
export CC="ccache gcc"
export CFLAGS="-g -O2 -ffile-prefix-map=$BUILD_DIR=."
ccache --zero-stats >/dev/null
# \$$ survives make: the linker sees a literal $ORIGIN. -z lazy because Slurm's plugins resolve symbols from the
# program that loads them, which immediate binding (-z now) breaks.
export LDFLAGS='-Wl,-z,lazy -Wl,-rpath,\$$ORIGIN/../lib/slurm -Wl,-rpath,\$$ORIGIN/../lib -Wl,-rpath,\$$ORIGIN'
configure_options=(
    --prefix=/opt/slurm-factory-build/slurm-24.11.5-resolute
    --sysconfdir=/etc/slurm
    --localstatedir=/var
    --runstatedir=/run
    --without-rpath
    --disable-static
    --enable-pam
    --with-pam_dir=/opt/slurm-factory-build/slurm-24.11.5-resolute/lib/security
    --enable-cgroupv2
    --enable-slurmrestd
    --with-munge
    --with-json
    --with-yaml
    --with-jwt
    --with-hwloc
    --with-lz4
    --with-lua
    --with-libcurl
    --with-pmix=/usr/lib/x86_64-linux-gnu/pmix2
    --with-http-parser
)
printf '%s\n' "${configure_options[@]}" > "$META_DIR/configure-options.txt"
cd "$BUILD_DIR"
./configure "${configure_options[@]}"

stage compile
make -j"$JOBS"
make -j"$JOBS" -C contribs/pmi2
make -C contribs/pam_slurm_adopt

stage install
make install
make -C contribs/pmi2 install
make -C contribs/pam_slurm_adopt install
find "$PREFIX" -name '*.la' -delete

stage relocate
# Every ELF file finds the tree's libraries relative to itself: $ORIGIN/<path to each library directory>.
is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }
: > "$META_DIR/elf-files.txt"
while IFS= read -r -d '' file; do
    is_elf "$file" || continue
    # Object files (crtbegin.o, ...) and static binaries have no dynamic section: nothing to relocate.
    patchelf --print-rpath "$file" >/dev/null 2>&1 || continue
    dir=$(dirname "$file")
    runpath=""
    for libdir in lib/slurm lib; do
        [ -d "$PREFIX/$libdir" ] || continue
        runpath="${runpath:+$runpath:}\$ORIGIN/$(realpath --relative-to="$dir" "$PREFIX/$libdir")"
    done
    patchelf --set-rpath "$runpath" "$file"
    printf '%s\n' "${file#"$PREFIX"/}" >> "$META_DIR/elf-files.txt"
done < <(find "$PREFIX" -type f -print0 | sort -z)

ccache --show-stats 2>&1 | tee "$META_DIR/ccache-stats.txt" || true
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
(cd "$PREFIX/lib/slurm" && ls -1 *.so) > "$META_DIR/plugins.txt"
"$PREFIX/sbin/slurmd" -V > "$META_DIR/slurmd-version.txt"
stage done
