#!/usr/bin/env bash
# Installs a4c-agent or a4c-control-plane as a systemd service from this (built) checkout.
#
#   deploy/install.sh agent|control-plane [--prefix /opt/a4c] [--root DIR] [--dry-run]
#
# Build first (npm ci && npx tsc -b). The installer then, idempotently:
#   - copies the runtime tree to the prefix: package.json, package-lock.json, every
#     workspace's package.json and dist/, control-plane/migrations, docs/operations.md,
#     and node_modules (copied from the checkout, then `npm prune --omit=dev --offline`:
#     no registry needed). Both daemons' code is copied, so the tree stays consistent
#     when one host runs both. The units and examples are kept in <prefix>/deploy for
#     reference (new settings after an upgrade);
#   - installs the unit to /etc/systemd/system (ExecStart rewritten when the prefix is
#     not /opt/a4c or node is not /usr/bin/node);
#   - copies the example environment file to /etc/a4c/<name>.env only if it is absent;
#   - control-plane: creates the "postgres" system user the embedded PostgreSQL runs as
#     (the unit's /etc is read-only, so the daemon could not create it itself);
#   - systemctl daemon-reload, enable --now (restart when it was already running).
#
# --root DIR  install into a staging root instead of / (for tests and image builds):
#             no systemctl, no user creation, no need to be root.
# --dry-run   print what would be done and change nothing.
set -euo pipefail

PROG=${0##*/}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/a4c
ROOT=
DRY_RUN=0
COMPONENT=
MIN_NODE_MAJOR=20

usage() {
  cat <<EOF
Usage: $PROG agent|control-plane [--prefix DIR] [--root DIR] [--dry-run]

Installs the A4C agent or control plane from this built checkout ($SRC)
as a systemd service.

  --prefix DIR  where the code goes (default /opt/a4c)
  --root DIR    install into a staging root instead of / (no systemctl, no root needed)
  --dry-run     print what would be done, change nothing
EOF
}

die() {
  echo "$PROG: $*" >&2
  exit 1
}

while (($#)); do
  case $1 in
    agent | control-plane)
      [[ -z $COMPONENT ]] || die "only one of agent, control-plane"
      COMPONENT=$1
      ;;
    --prefix)
      (($# >= 2)) || die "--prefix needs a directory"
      PREFIX=$2
      shift
      ;;
    --prefix=*) PREFIX=${1#*=} ;;
    --root)
      (($# >= 2)) || die "--root needs a directory"
      ROOT=$2
      shift
      ;;
    --root=*) ROOT=${1#*=} ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
  shift
done
[[ -n $COMPONENT ]] || {
  usage >&2
  exit 2
}
[[ $PREFIX == /* ]] || die "--prefix must be an absolute path, got $PREFIX"
PREFIX=${PREFIX%/}
[[ -n $PREFIX ]] || die "--prefix must not be /"
if [[ -n $ROOT ]]; then
  [[ $ROOT == /* ]] || ROOT=$(pwd)/$ROOT
  ROOT=${ROOT%/}
fi

UNIT=a4c-$COMPONENT.service
DEST=$ROOT$PREFIX
UNIT_DIR=$ROOT/etc/systemd/system
CONF_DIR=$ROOT/etc/a4c
ENV_FILE=$CONF_DIR/$COMPONENT.env

# run CMD...: runs it, or only prints it with --dry-run.
run() {
  if ((DRY_RUN)); then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# --- Checks ------------------------------------------------------------------------
if [[ -z $ROOT ]] && ((!DRY_RUN)) && [[ $(id -u) -ne 0 ]]; then
  die "must run as root (or use --root DIR to stage an install, --dry-run to preview)"
fi

NODE=$(command -v node || true)
[[ $NODE == /* ]] || die "node not found: install Node.js $MIN_NODE_MAJOR or newer (e.g. /usr/bin/node)"
NODE_VERSION=$("$NODE" -p 'process.versions.node')
((${NODE_VERSION%%.*} >= MIN_NODE_MAJOR)) || die "Node.js $NODE_VERSION at $NODE is too old: $MIN_NODE_MAJOR or newer is needed"
# The unit says /usr/bin/node: keep that name when it is the same node.
if [[ -x /usr/bin/node && $(readlink -f /usr/bin/node) == "$(readlink -f "$NODE")" ]]; then NODE=/usr/bin/node; fi

if [[ $COMPONENT == control-plane ]]; then
  # The control-plane unit has ProtectHome=yes: code or node under a home is invisible.
  for p in "$NODE" "$PREFIX"; do
    case $p in
      /home/* | /root/* | /run/user/*) die "$p is under a home directory, which the control-plane unit's sandbox (ProtectHome=yes) hides; install Node.js system-wide and use a prefix outside /home and /root" ;;
    esac
  done
fi

for f in package.json package-lock.json node_modules agent/dist/main.js control-plane/dist/main.js \
  packages/common/dist/index.js packages/proto/dist/index.js control-plane/migrations "deploy/$UNIT" "deploy/$COMPONENT.env.example"; do
  [[ -e $SRC/$f ]] || die "$SRC/$f is missing: build the checkout first (npm ci && npx tsc -b)"
done
if [[ -d $DEST && $(readlink -f "$DEST") == "$(readlink -f "$SRC")" ]]; then
  die "$SRC is the install prefix itself: run the installer from the built checkout"
fi
WORKSPACES=$("$NODE" -p 'require(process.argv[1]).workspaces.join("\n")' "$SRC/package.json")

echo "Installing $UNIT from $SRC into ${ROOT:-/} (prefix $PREFIX, node $NODE_VERSION at $NODE)$( ((DRY_RUN)) && echo ': dry run, nothing is changed')"

# --- The code ------------------------------------------------------------------------
# replace SRC_PATH DEST_PATH: DEST_PATH becomes a copy of SRC_PATH.
replace() {
  run rm -rf "$2"
  run cp -a "$1" "$2"
}

run mkdir -p "$DEST"
run chmod 0755 "$DEST"
run cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
while IFS= read -r ws; do
  [[ -n $ws ]] || continue
  run mkdir -p "$DEST/$ws"
  run cp "$SRC/$ws/package.json" "$DEST/$ws/package.json"
  if [[ -d $SRC/$ws/dist ]]; then replace "$SRC/$ws/dist" "$DEST/$ws/dist"; fi
done <<<"$WORKSPACES"
replace "$SRC/control-plane/migrations" "$DEST/control-plane/migrations"
run mkdir -p "$DEST/docs" "$DEST/deploy"
run cp "$SRC/docs/operations.md" "$DEST/docs/"
run cp "$SRC/deploy/a4c-agent.service" "$SRC/deploy/a4c-control-plane.service" \
  "$SRC/deploy/agent.env.example" "$SRC/deploy/control-plane.env.example" "$DEST/deploy/"

# node_modules: a copy of the checkout's (its workspace links are relative, so they
# point into the prefix), swapped in whole, then stripped of dev dependencies offline.
run rm -rf "$DEST/node_modules.new" "$DEST/node_modules.old"
run cp -a "$SRC/node_modules" "$DEST/node_modules.new"
if [[ -e $DEST/node_modules ]]; then run mv "$DEST/node_modules" "$DEST/node_modules.old"; fi
run mv "$DEST/node_modules.new" "$DEST/node_modules"
run rm -rf "$DEST/node_modules.old"
if command -v npm >/dev/null; then
  # --offline: never the registry; --ignore-scripts: nothing runs at install time.
  PRUNE=(npm prune --prefix "$DEST" --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error)
  run "${PRUNE[@]}" ||
    echo "$PROG: warning: npm prune failed; dev dependencies stay in $DEST/node_modules (harmless)" >&2
else
  echo "$PROG: warning: npm not found; dev dependencies stay in $DEST/node_modules (harmless)" >&2
fi
# Readable by everyone (the postgres user runs the embedded PostgreSQL binaries from
# node_modules), writable by root only.
run chmod -R u+rwX,go+rX,go-w "$DEST"

# --- The unit ------------------------------------------------------------------------
run mkdir -p "$UNIT_DIR"
if ((DRY_RUN)); then
  echo "+ write $UNIT_DIR/$UNIT (ExecStart=$NODE $PREFIX/$COMPONENT/dist/main.js)"
else
  tmp=$(mktemp "$UNIT_DIR/.$UNIT.XXXXXX")
  sed -e "s#^ExecStart=/usr/bin/node /opt/a4c/#ExecStart=$NODE $PREFIX/#" \
    -e "s#file:///opt/a4c/#file://$PREFIX/#" "$SRC/deploy/$UNIT" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$UNIT_DIR/$UNIT"
fi

# --- The settings ----------------------------------------------------------------------
run mkdir -p "$CONF_DIR"
if [[ -e $ENV_FILE ]]; then
  echo "Keeping the existing $ENV_FILE (new settings, if any: $PREFIX/deploy/$COMPONENT.env.example)"
else
  # 0600: it may hold DATABASE_URL's password or A4C_ADMIN_TOKEN.
  run install -m 0600 "$SRC/deploy/$COMPONENT.env.example" "$ENV_FILE"
fi

# --- The postgres user (embedded PostgreSQL) ---------------------------------------------
if [[ $COMPONENT == control-plane ]]; then
  if [[ -f $ENV_FILE ]] && grep -Eq '^[[:space:]]*DATABASE_URL=.+' "$ENV_FILE"; then
    : # external PostgreSQL: no postgres user needed
  elif [[ -n $ROOT ]]; then
    echo "Staging root: not creating the postgres system user (the embedded PostgreSQL runs as it)"
  elif ! getent passwd postgres >/dev/null; then
    getent group postgres >/dev/null || run groupadd --system postgres
    run useradd --system --gid postgres --home-dir /var/lib/postgresql --no-create-home \
      --shell /usr/sbin/nologin --comment "PostgreSQL administrator" postgres
  fi
fi

# --- systemd ---------------------------------------------------------------------------
if [[ -n $ROOT ]]; then
  echo "Staging root: not running systemctl"
elif [[ ! -d /run/systemd/system ]] && ((!DRY_RUN)); then
  echo "$PROG: warning: systemd is not running here; on the target run: systemctl daemon-reload && systemctl enable --now $UNIT" >&2
else
  run systemctl daemon-reload
  if ((!DRY_RUN)) && systemctl is-active --quiet "$UNIT"; then
    run systemctl enable "$UNIT"
    run systemctl restart "$UNIT"
  else
    run systemctl enable --now "$UNIT"
  fi
fi

# --- Next steps ------------------------------------------------------------------------
echo
echo "Next: edit ${ENV_FILE#"$ROOT"}, then: systemctl restart $UNIT; journalctl -u $UNIT -f"
if [[ $COMPONENT == agent ]]; then
  cat <<EOF
  Set A4C_CONTROL_PLANE (the control plane's gRPC address, host:9090) and A4C_HOST_ID
  (unique per host; default the hostname). Check with: curl -s http://127.0.0.1:9100/status
EOF
else
  cat <<EOF
  For agents on other machines set A4C_BIND_ADDRESS=0.0.0.0; for an external PostgreSQL
  set DATABASE_URL. The admin token is in /var/lib/a4c/control-plane/admin-token
  (unless A4C_ADMIN_TOKEN is set).
EOF
fi
