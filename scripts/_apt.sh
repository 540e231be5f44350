# Sourced by the sysdeps scripts: install_missing PKG... installs Debian packages as root (quietly), or,
# without root, says what is missing and returns 1 (the tests that need them skip on a desk, fail in CI).
install_missing() {
  [ $# -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "note: Debian packages missing (install as root): $*" >&2
    return 1
  fi
}
