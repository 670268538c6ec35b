# Sourced by the image scripts (scripts/sandbox-image, scripts/container-image): which
# Debian suite and mirror images are built from, and debootstrap with a package cache
# kept between builds.
#
# The mirror is this machine's own: the first apt source (deb822 `.sources` files or
# one-line `.list` files) that carries the suite, so a machine that uses another mirror
# (a cloud's, a proxy's, a snapshot) builds from it too. DEBIAN_MIRROR overrides it;
# deb.debian.org is the fallback when no apt source carries the suite (another
# distribution, or another Debian release than the one asked for).

# The suite to build: $DEBIAN_SUITE, else this machine's Debian release, else bookworm.
debian_suite() {
  if [ -n "${DEBIAN_SUITE:-}" ]; then
    echo "$DEBIAN_SUITE"
    return
  fi
  (
    # shellcheck source=/dev/null
    . /etc/os-release 2>/dev/null || true
    if [ "${ID:-}" = debian ] && [ -n "${VERSION_CODENAME:-}" ]; then
      echo "$VERSION_CODENAME"
    else
      echo bookworm
    fi
  )
}

# The URI of the first apt source on this machine that carries suite $1 (http, https,
# ftp or file), or nothing. APT_SOURCES_DIR (default /etc/apt) is for tests.
apt_source_uri() {
  local suite="$1" dir="${APT_SOURCES_DIR:-/etc/apt}" f
  for f in "$dir"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$suite" '
      function flush(   n, s, i, u) {
        if (!found && types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
          n = split(suites, s, /[ \t]+/)
          for (i = 1; i <= n; i++) if (s[i] == want) {
            split(uris, u, /[ \t]+/)
            if (u[1] ~ /^(https?|ftp|file):\/\//) { print u[1]; found = 1 }
          }
        }
        types = ""; uris = ""; suites = ""; enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        i = index($0, ":"); if (i == 0) next
        key = tolower(substr($0, 1, i - 1)); val = substr($0, i + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { flush() }
    ' "$f"
  done | head -n1 | grep . && return 0
  for f in "$dir"/sources.list "$dir"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
      awk -v want="$suite" '$1 == "deb" && $3 == want && $2 ~ /^(https?|ftp|file):\/\// { print $2; exit }'
  done | head -n1 | grep .
}

# The mirror to build suite $1 from: $DEBIAN_MIRROR, else this machine's apt source
# for the suite, else deb.debian.org.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  apt_source_uri "$1" || echo "http://deb.debian.org/debian"
}

# debootstrap_cached SUITE TARGET MIRROR [debootstrap options...]: debootstrap with the
# downloaded packages kept in DEBOOTSTRAP_CACHE (default /var/cache/chorus-debootstrap),
# so the next image build downloads only what changed. The packages are configured
# with dpkg's unsafe I/O (no fsync per file: a throwaway root being built needs no
# crash safety), which halves the time. Its log goes to TARGET.log; the tail is shown
# when it fails.
debootstrap_cached() {
  local suite="$1" target="$2" mirror="$3"
  shift 3
  local cache="${DEBOOTSTRAP_CACHE:-/var/cache/chorus-debootstrap}/$suite" arg
  mkdir -p "$cache"
  for arg in "$@"; do
    if [ "$arg" = --download-only ]; then
      debootstrap --cache-dir="$cache" "$@" "$suite" "$target" "$mirror" >"$target.log" 2>&1 \
        || { tail -n 30 "$target.log" >&2; return 1; }
      return 0
    fi
  done
  if ! debootstrap --foreign --cache-dir="$cache" "$@" "$suite" "$target" "$mirror" >"$target.log" 2>&1; then
    tail -n 30 "$target.log" >&2
    return 1
  fi
  mkdir -p "$target/etc/dpkg/dpkg.cfg.d"
  echo force-unsafe-io >"$target/etc/dpkg/dpkg.cfg.d/chorus-unsafe-io"
  if ! chroot "$target" /debootstrap/debootstrap --second-stage >>"$target.log" 2>&1; then
    tail -n 30 "$target.log" >&2
    return 1
  fi
  rm -f "$target/etc/dpkg/dpkg.cfg.d/chorus-unsafe-io"
}
