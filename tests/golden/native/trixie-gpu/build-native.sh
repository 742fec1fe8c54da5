#!/usr/bin/env bash
# slurm-factory native build: Slurm 24.11.5 on Debian 13 (trixie + GPU).
# Runs inside the toolchain container. Slurm's own configure/make links against the OS's packaged libraries; the
# result is a hardened release build installed into /opt/slurm-factory-build/slurm-24.11.5-trixie-gpu with $ORIGIN-relative RPATHs, so it can be
# unpacked anywhere, and its debug symbols split into lib/debug (the -debug companion tarball).
set -euo pipefail

SOURCE=/var/cache/slurm-factory/sources/_source-cache/archive/e1/e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332.tar.gz
PREFIX=/opt/slurm-factory-build/slurm-24.11.5-trixie-gpu
PLAN_DIR=/opt/slurm-factory/plan
BUILD_DIR=/build/src
META_DIR=/build/meta
JOBS=${SLURM_FACTORY_JOBS:-$(nproc)}
# Reproducible builds: every timestamp a tool writes is the release date, and no object names the build directory
# (debug info, __FILE__): the same request gives the same bytes on another day, host or user.
export SOURCE_DATE_EPOCH=1746576000
export TZ=UTC LC_ALL=C.UTF-8

stage() { printf '==> slurm-factory stage: %s\n' "$1"; }
fail() { printf 'slurm-factory: %s\n' "$1" >&2; exit 1; }
is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

stage verify-source
echo "e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332  $SOURCE" | sha256sum --check --strict - || fail "source tarball does not match sha256 e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332"

stage unpack
rm -rf "$BUILD_DIR" "$META_DIR" "$PREFIX"
mkdir -p "$BUILD_DIR" "$META_DIR" "$PREFIX/lib/security"
tar -xzf "$SOURCE" -C "$BUILD_DIR" --strip-components=1
cd "$BUILD_DIR"

stage patch
: > "$META_DIR/patches.txt"
if ! patch -p1 --batch --forward --no-backup-if-mismatch --fuzz=0 < "$PLAN_DIR/patches/01-relocatable-plugin-dir.patch" > "$META_DIR/patch.out" 2>&1; then
    cat "$META_DIR/patch.out"
    first=$(find . -name '*.rej' -print -quit)
    [ -z "$first" ] || { printf 'first rejected hunk (%s):\n' "${first%.rej}"; head -n 12 "$first"; }
    fail "patch 01-relocatable-plugin-dir.patch (slurm-factory) does not apply to Slurm 24.11.5"
fi
cat "$META_DIR/patch.out"
printf '%s\t%s\t%s\n' '01-relocatable-plugin-dir.patch' 'slurm-factory' "$(sha256sum < "$PLAN_DIR/patches/01-relocatable-plugin-dir.patch" | cut -d' ' -f1)" >> "$META_DIR/patches.txt"
if ! patch -p1 --batch --forward --no-backup-if-mismatch --fuzz=0 < "$PLAN_DIR/patches/02-mysql-new-handle-after-create-db.patch" > "$META_DIR/patch.out" 2>&1; then
    cat "$META_DIR/patch.out"
    first=$(find . -name '*.rej' -print -quit)
    [ -z "$first" ] || { printf 'first rejected hunk (%s):\n' "${first%.rej}"; head -n 12 "$first"; }
    fail "patch 02-mysql-new-handle-after-create-db.patch (slurm-factory) does not apply to Slurm 24.11.5"
fi
cat "$META_DIR/patch.out"
printf '%s\t%s\t%s\n' '02-mysql-new-handle-after-create-db.patch' 'slurm-factory' "$(sha256sum < "$PLAN_DIR/patches/02-mysql-new-handle-after-create-db.patch" | cut -d' ' -f1)" >> "$META_DIR/patches.txt"
rm -f "$META_DIR/patch.out"

stage configure
# ccache lives in a mounted cache directory; `--no-cache` sets CCACHE_DISABLE=1 in the container environment.
export CCACHE_DIR=/var/cache/slurm-factory/ccache
export CCACHE_BASEDIR="$BUILD_DIR"
export CCACHE_COMPILERCHECK=content
export CC="ccache gcc"
# A release build with the distribution's hardening flags (catalog/data/build.yaml; the manifest records them).
HARDENING_LDFLAGS='-Wl,--build-id=sha1 -Wl,-z,lazy -Wl,-z,relro'
export CPPFLAGS='-D_FORTIFY_SOURCE=2'
export CFLAGS="-g -O2 -fstack-protector-strong -fstack-clash-protection -Wformat -Werror=format-security -fcf-protection -ffile-prefix-map=$BUILD_DIR=."
# \$$ survives make: the linker sees a literal $ORIGIN.
export LDFLAGS="$HARDENING_LDFLAGS"' -Wl,-rpath,\$$ORIGIN/../lib/slurm -Wl,-rpath,\$$ORIGIN/../lib -Wl,-rpath,\$$ORIGIN'
printf 'CPPFLAGS=%s\nCFLAGS=%s\nLDFLAGS=%s\n' "$CPPFLAGS" "$CFLAGS" "$LDFLAGS" > "$META_DIR/build-flags.txt"
ccache --zero-stats >/dev/null
configure_options=(
    --prefix=/opt/slurm-factory-build/slurm-24.11.5-trixie-gpu
    --disable-debug
    --enable-pkgconfig
    --sysconfdir=/etc/slurm
    --localstatedir=/var
    --runstatedir=/run
    --without-rpath
    --disable-static
    --enable-pam
    --with-pam_dir=/opt/slurm-factory-build/slurm-24.11.5-trixie-gpu/lib/security
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
    --with-nvml
    --with-rsmi=/usr
)
printf '%s\n' "${configure_options[@]}" > "$META_DIR/configure-options.txt"
./configure "${configure_options[@]}"

stage compile
make -j"$JOBS"
make -j"$JOBS" -C contribs/pmi
make -j"$JOBS" -C contribs/pmi2
make -j"$JOBS" -C contribs/pam
make -j"$JOBS" -C contribs/pam_slurm_adopt
make -j"$JOBS" -C contribs/perlapi
make -j"$JOBS" -C contribs/seff
make -j"$JOBS" -C contribs/sgather
make -j"$JOBS" -C contribs/sjobexit
make -j"$JOBS" -C contribs/nss_slurm

stage install
make install
make -C contribs/pmi install
make -C contribs/pmi2 install
make -C contribs/pam install
make -C contribs/pam_slurm_adopt install
make -C contribs/perlapi install
make -C contribs/seff install
make -C contribs/sgather install
make -C contribs/sjobexit install
make -C contribs/nss_slurm install
install -m 0755 contribs/sjstat "$PREFIX/bin/sjstat"
printf '%s\n' pmi pmi2 pam pam_slurm_adopt perlapi seff sgather sjobexit nss_slurm sjstat > "$META_DIR/contribs.txt"
find "$PREFIX" -name '*.la' -delete
stage contribs
# ExtUtils::MakeMaker's install bookkeeping names the prefix and is of no use in a tree that is unpacked elsewhere.
find "$PREFIX" \( -name perllocal.pod -o -name .packlist \) -delete
# The Perl API lands in a directory named for this perl's version; lib/perl5 names it for the modulefile
# (PERL5LIB) and for the scripts, which find it from their own location instead of the prefix.
perl_dir=$(find "$PREFIX/lib" -name Slurm.pm -path '*/perl*' -printf '%h\n' -quit)
if [ -n "$perl_dir" ]; then
    ln -s "$(realpath --relative-to="$PREFIX/lib" "$perl_dir")" "$PREFIX/lib/perl5"
fi
for script in "$PREFIX"/bin/*; do
    [ -f "$script" ] && ! is_elf "$script" || continue
    sed -i -e "s|^use lib qw($PREFIX/[^)]*);|use FindBin (); use lib \"\$FindBin::RealBin/../lib/perl5\";|" \
           -e "s|^SEFF=$PREFIX/bin/seff\$|SEFF=\"\$(dirname \"\$(readlink -f \"\$0\")\")/seff\"|" "$script"
done
INSTALL_PATHS=("$PREFIX")
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
    for libdir in lib/slurm lib; do
        [ -d "$PREFIX/$libdir" ] || continue
        runpath="${runpath:+$runpath:}\$ORIGIN/$(realpath --relative-to="$dir" "$PREFIX/$libdir")"
    done
    patchelf --set-rpath "$runpath" "$file"
    printf '%s\n' "${file#"$PREFIX"/}" >> "$META_DIR/elf-files.txt"
done < <(find "$PREFIX" -path "$PREFIX/lib/debug" -prune -o -type f -print0 | sort -z)

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
# Every OS package a host of this tree needs (the linked ones and those it loads or runs without linking: munge's
# daemon, libpmix), with its version and license where the package manager records them, for the SBOM.
{
    cut -f1 "$META_DIR/runtime-packages.tsv"
    printf '%s\n' perl munge libmunge2 libjson-c5 libhttp-parser2.9 libyaml-0-2 libjwt2 libhwloc15 liblua5.4-0 libmariadb3 libcurl4t64 libreadline8t64 libpam0g libdbus-1-3 liblz4-1 libnuma1 libpmix2t64
} | sort -u | while IFS= read -r package; do
    [ -n "$package" ] || continue
    version=$(dpkg-query --show --showformat='${Version}' "$package" 2>/dev/null) || continue
    # DEP-5 copyright files name the license of their first Files: paragraph first.
    license=$(sed -n 's/^License: *\([^ ]*\).*/\1/p' "/usr/share/doc/$package/copyright" 2>/dev/null | head -n 1)
    printf '%s\t%s\t%s\n' "$package" "$version" "$license"
done > "$META_DIR/os-inventory.tsv"
(cd "$PREFIX/lib/slurm" && ls -1 *.so) > "$META_DIR/plugins.txt"
"$PREFIX/sbin/slurmd" -V > "$META_DIR/slurmd-version.txt"
stage done
