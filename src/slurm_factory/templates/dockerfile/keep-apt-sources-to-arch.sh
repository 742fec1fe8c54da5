#!/bin/sh
# slurm-factory: a cross build's toolchain image whose target arch's packages are in another archive (Ubuntu's ports).
# usage: keep-apt-sources-to-arch.sh ARCH FOREIGN_DIR [APT_DIR] [KEYRINGS_DIR]
#   FOREIGN_DIR holds the ARCH image's /etc/apt (etc-apt/) and /usr/share/keyrings (keyrings/).
# This image's own sources are kept to its arch, the ARCH image's sources are added kept to ARCH, and the keys and
# credentials those need (a site's mirror) are added without replacing this image's. One-line lists get [arch=...]
# (replacing any arch option they had), deb822 .sources files an Architectures field (replacing theirs).
# POSIX sh and awk (mawk too): a minimal Debian or Ubuntu image has neither Python nor GNU awk.
set -eu

ARCH="$1"
FOREIGN="$2"
APT="${3:-/etc/apt}"
KEYRINGS="${4:-/usr/share/keyrings}"

one_line_to_arch() {
    awk -v arch="$1" '
        /^[ \t]*deb(-src)?[ \t]/ {
            match($0, /^[ \t]*deb(-src)?/)
            head = substr($0, 1, RLENGTH)
            rest = substr($0, RLENGTH + 1)
            sub(/^[ \t]+/, "", rest)
            options = ""
            if (substr(rest, 1, 1) == "[") {
                close_at = index(rest, "]")
                count = split(substr(rest, 2, close_at - 2), parts, /[ \t]+/)
                for (i = 1; i <= count; i++)
                    if (parts[i] != "" && parts[i] !~ /^arch[-+]?=/) options = options " " parts[i]
                rest = substr(rest, close_at + 1)
                sub(/^[ \t]+/, "", rest)
            }
            print head " [arch=" arch options "] " rest
            next
        }
        { print }
    ' "$2"
}

deb822_to_arch() {
    awk -v arch="$1" '
        function end_stanza() {
            if (fields) print "Architectures: " arch
            fields = 0
            dropping = 0
        }
        /^[ \t]*$/ { end_stanza(); print; next }
        /^#/ { print; next }
        /^[ \t]/ { if (!dropping) print; next }
        {
            name = tolower($0)
            sub(/[ \t]*:.*/, "", name)
            dropping = (name == "architectures")
            if (!dropping) { fields++; print }
        }
        END { end_stanza() }
    ' "$2"
}

keep_to_arch() {
    case "$2" in
        *.sources) deb822_to_arch "$1" "$2" > "$2.slurm-factory" ;;
        *) one_line_to_arch "$1" "$2" > "$2.slurm-factory" ;;
    esac
    mv "$2.slurm-factory" "$2"
}

for file in "$APT/sources.list" "$APT"/sources.list.d/*.list "$APT"/sources.list.d/*.sources; do
    if [ -f "$file" ]; then keep_to_arch "$(dpkg --print-architecture)" "$file"; fi
done

mkdir -p "$APT/sources.list.d"
for file in "$FOREIGN/etc-apt/sources.list" "$FOREIGN"/etc-apt/sources.list.d/*.list \
            "$FOREIGN"/etc-apt/sources.list.d/*.sources; do
    if [ -f "$file" ]; then
        copy="$APT/sources.list.d/$ARCH-$(basename "$file")"
        cp "$file" "$copy"
        keep_to_arch "$ARCH" "$copy"
    fi
done

# What the added sources may need: their keys and credentials (never replacing a file of this image).
add_missing() {
    [ -d "$1" ] || return 0
    mkdir -p "$2"
    for entry in "$1"/* "$1"/.[!.]*; do
        if [ -e "$entry" ] && [ ! -e "$2/$(basename "$entry")" ]; then cp -R "$entry" "$2/"; fi
    done
}
for directory in keyrings trusted.gpg.d auth.conf.d; do
    add_missing "$FOREIGN/etc-apt/$directory" "$APT/$directory"
done
add_missing "$FOREIGN/keyrings" "$KEYRINGS"
