# An image whose apt sources are in the deb822 format only (as Ubuntu's since 24.04): the "foreign" image of the
# cross-sources test, naming the mirror its base image names (a one-line sources.list made by debootstrap, or
# Docker Hub's debian.sources).
FROM debian:trixie
RUN mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '$1 == "deb" { print $2; exit } $1 == "URIs:" { print $2; exit }')" \
 && test -n "$mirror" \
 && rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
 && printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' \
        "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg > /etc/apt/sources.list.d/debian.sources
