#!/usr/bin/env bash
# install.sh: build flowscore and install it as a systemd service, for operators (issue 6).
# Idempotent: running it again rebuilds, reinstalls and keeps an edited configuration.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    cat <<EOF
usage: scripts/install.sh [--prefix DIR] [--sysconfdir DIR] [--build-dir DIR] [--no-deps]
                          [--no-systemctl] [--enable]

Install the Debian build dependencies (scripts/deps.sh build), build flowscore (Release), and
'cmake --install' it:
  <prefix>/bin/flowscore                          the binary
  <prefix>/lib/systemd/system/flowscore.service   the unit (for prefix /usr: /lib/systemd/system)
  <prefix>/libexec/flowscore/flowscore-reload     the unit's ExecReload helper
  <sysconfdir>/flowscore/flowscore.json           the configuration (an edited one is kept; the
                                                  new defaults then go to flowscore.json.new)
  <prefix>/share/flowscore/schemas/               data set schemas
  <prefix>/share/man/man1/flowscore.1             the manual page
then run 'systemctl daemon-reload' when systemd is running. The service keeps its models in
/var/lib/flowscore/models/<name>/<version>.fsm (docs/operations.md).

  --prefix DIR      install prefix (default /usr/local)
  --sysconfdir DIR  configuration root (default /etc; the unit reads DIR/flowscore/flowscore.json)
  --build-dir DIR   CMake build directory (default build-install)
  --no-deps         do not check or install Debian packages
  --no-systemctl    do not run systemctl (also implied by \$DESTDIR)
  --enable          also 'systemctl enable --now flowscore' (a running service is restarted
                    so that it uses the new binary)
  --help            this text

DESTDIR=/path scripts/install.sh stages the files under /path (for packaging).
Exit status: 0 installed; 1 a step failed; 2 usage error.
EOF
}

die() {
    echo "install: $*" >&2
    exit 1
}

prefix=/usr/local
sysconfdir=/etc
build_dir="$ROOT/build-install"
deps=1
use_systemctl=1
enable=0
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) [ $# -ge 2 ] || { usage >&2; exit 2; }; prefix=$2; shift 2 ;;
    --sysconfdir) [ $# -ge 2 ] || { usage >&2; exit 2; }; sysconfdir=$2; shift 2 ;;
    --build-dir) [ $# -ge 2 ] || { usage >&2; exit 2; }; build_dir=$2; shift 2 ;;
    --no-deps) deps=0; shift ;;
    --no-systemctl) use_systemctl=0; shift ;;
    --enable) enable=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ "$prefix" == /* && "$sysconfdir" == /* ]] ||
    { echo "install: --prefix and --sysconfdir must be absolute paths" >&2; exit 2; }
if [ -n "${DESTDIR:-}" ]; then
    use_systemctl=0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "run as root, or install sudo"
    sudo=sudo
fi

if [ "$deps" = 1 ]; then
    "$ROOT/scripts/deps.sh" build
fi

echo "install: building flowscore (Release) in $build_dir"
cmake -S "$ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DFS_BUILD_TESTS=OFF \
    -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_SYSCONFDIR="$sysconfdir" >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target flowscore

echo "install: installing into ${DESTDIR:-}$prefix (configuration in ${DESTDIR:-}$sysconfdir/flowscore)"
# sudo resets the environment: pass DESTDIR explicitly.
$sudo env DESTDIR="${DESTDIR:-}" cmake --install "$build_dir"

if [ "$use_systemctl" = 1 ]; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        $sudo systemctl daemon-reload
        echo "install: systemctl daemon-reload done"
        if [ "$enable" = 1 ]; then
            $sudo systemctl enable flowscore.service
            # restart picks up a new binary; it also starts a stopped service
            $sudo systemctl restart flowscore.service
            $sudo systemctl --no-pager --lines=5 status flowscore.service || true
        elif systemctl is-active --quiet flowscore.service; then
            echo "install: flowscore is running the previous binary: sudo systemctl restart flowscore"
        fi
    else
        echo "install: systemd is not running here; skipped systemctl daemon-reload"
        [ "$enable" = 0 ] || die "--enable needs a running systemd"
    fi
fi

cat <<EOF

flowscore is installed.
  start:    sudo systemctl enable --now flowscore
  models:   /var/lib/flowscore/models/<name>/<version>.fsm (publish by rename; see flowscore(1))
  reload:   sudo systemctl reload flowscore    (waits; fails if a model file was refused)
  logs:     journalctl -u flowscore
  config:   $sysconfdir/flowscore/flowscore.json   (restart after changing it)
EOF
