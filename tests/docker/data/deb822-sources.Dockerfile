# An image whose apt sources are in the deb822 format (as Ubuntu's since 24.04 and Debian's own images): the
# "foreign" image of the cross-sources test, naming the same mirror as the base image's one-line sources.list.
FROM debian:trixie
RUN mirror="$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)" \
 && printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' \
        "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg > /etc/apt/sources.list.d/debian.sources \
 && rm /etc/apt/sources.list
