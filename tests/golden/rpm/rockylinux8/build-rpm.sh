#!/usr/bin/env bash
# slurm-factory package build: Slurm 24.11.5 for Rocky Linux 8 (rockylinux8) as .rpm
# packages, version 24.11.5-1.sf.el8. Runs inside the packaging image: the source is checked as for the tarball,
# rpmbuild builds slurm-smd.spec (which applies the patches as the tarball's build does and compiles for /usr,
# /usr/lib64 and /etc/slurm), and rpmlint checks the spec and every package. The packages land in /build/packages.
set -euo pipefail

SOURCE=/var/cache/slurm-factory/sources/_source-cache/archive/e1/e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332.tar.gz
PLAN_DIR=/opt/slurm-factory/plan
TOPDIR=/build/rpmbuild
META_DIR=/build/meta
OUTPUT_DIR=/build/packages
JOBS=${SLURM_FACTORY_JOBS:-$(nproc)}
# Reproducible builds: every file's mtime is clamped to the release date and it is each package's build time (the
# spec's clamp_mtime_to_source_date_epoch and use_source_date_epoch_as_buildtime); the build path is fixed.
export SOURCE_DATE_EPOCH=1746576000
export TZ=UTC LC_ALL=C.UTF-8

stage() { printf '==> slurm-factory stage: %s\n' "$1"; }
fail() { printf 'slurm-factory: %s\n' "$1" >&2; exit 1; }
is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

stage verify-source
echo "e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332  $SOURCE" | sha256sum --check --strict - || fail "source tarball does not match sha256 e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332"

stage sources
rm -rf "$TOPDIR" "$META_DIR" "$OUTPUT_DIR"
mkdir -p "$TOPDIR/SOURCES" "$TOPDIR/SPECS" "$META_DIR" "$OUTPUT_DIR"
cp "$SOURCE" "$TOPDIR/SOURCES/slurm-24.11.5.tar.gz"
cp "$PLAN_DIR/sources"/* "$TOPDIR/SOURCES/"
cp "$PLAN_DIR/slurm-smd.spec" "$TOPDIR/SPECS/slurm-smd.spec"
# The patches the spec's prep applies, in this order, recorded as the tarball's build records them.
: > "$META_DIR/patches.txt"
cp "$PLAN_DIR/patches/01-relocatable-plugin-dir.patch" "$TOPDIR/SOURCES/"
printf '%s\t%s\t%s\n' '01-relocatable-plugin-dir.patch' 'slurm-factory' "$(sha256sum < "$PLAN_DIR/patches/01-relocatable-plugin-dir.patch" | cut -d' ' -f1)" >> "$META_DIR/patches.txt"
cp "$PLAN_DIR/patches/02-mysql-new-handle-after-create-db.patch" "$TOPDIR/SOURCES/"
printf '%s\t%s\t%s\n' '02-mysql-new-handle-after-create-db.patch' 'slurm-factory' "$(sha256sum < "$PLAN_DIR/patches/02-mysql-new-handle-after-create-db.patch" | cut -d' ' -f1)" >> "$META_DIR/patches.txt"

stage compile
export CCACHE_DIR=/var/cache/slurm-factory/ccache
export CCACHE_BASEDIR="$TOPDIR/BUILD"
export CCACHE_COMPILERCHECK=content
ccache --zero-stats >/dev/null
rpmbuild -bb --define "_topdir $TOPDIR" --define "_smp_mflags -j$JOBS" --define "slurm_factory_cc ccache gcc" \
    "$TOPDIR/SPECS/slurm-smd.spec"
ccache --show-stats 2>&1 | tee "$META_DIR/ccache-stats.txt" || true

stage rpmlint
# Every finding rpmlint reports is written down; an error fails the build (the filters in slurm-smd.rpmlintrc say why
# each accepted one is right for these packages), a warning is reported. rpmlint 1 (Rocky 8) reads its filters with
# -f, rpmlint 2 with -r.
filters=-r
rpmlint --help 2>&1 | grep -q -- '--rpmlintrc' || filters=-f
status=0
rpmlint "$filters" "$PLAN_DIR/slurm-smd.rpmlintrc" "$TOPDIR/SPECS/slurm-smd.spec" "$TOPDIR"/RPMS/*/*.rpm \
    > "$META_DIR/rpmlint.txt" 2>&1 || status=$?
cat "$META_DIR/rpmlint.txt"
[ "$status" -eq 0 ] || fail "rpmlint found errors in the packages (above)"

stage collect
cp "$TOPDIR"/RPMS/*/*.rpm "$OUTPUT_DIR/"
# Each package's name, version, file and requirements (rpm's automatic ones included: the SBOM's dependencies).
for package in "$OUTPUT_DIR"/*.rpm; do
    printf '%s\t%s\t%s\t%s\n' "$(rpm -qp --queryformat '%{NAME}' "$package")" \
        "$(rpm -qp --queryformat '%{VERSION}-%{RELEASE}' "$package")" "$(basename "$package")" \
        "$(rpm -qp --requires "$package" | grep -v '^rpmlib(' | paste -sd, - | sed 's/,/, /g')"
done > "$META_DIR/packages.tsv"
cp "$PLAN_DIR/slurm-smd.spec" "$META_DIR/slurm-smd.spec"
stage done
