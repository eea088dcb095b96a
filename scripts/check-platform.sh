#!/usr/bin/env bash
# Checks pivoicectl on a clean Debian release and architecture, in a throwaway chroot.
#
#   sudo scripts/check-platform.sh trixie-amd64    # Debian trixie, PipeWire 1.4
#   sudo scripts/check-platform.sh trixie-arm64    # the same on arm64, under qemu-user
#   sudo scripts/check-platform.sh bookworm        # Debian bookworm, PipeWire 0.3.65
#                                                  # (on this machine's architecture)
#
# It builds the chroot with debootstrap (or reuses one that an earlier run finished),
# installs the Debian packages the way a user does (scripts/install-system-deps.sh),
# copies this working tree into it, installs it into a venv (`pip install '.[dev]'`,
# not editable), then runs the README's flow on the simulated room (sim up, doctor,
# setup, doctor, measure, parrot --self-test, run --local while a simulated person
# talks, sim down) and the test suite. Each step prints one verdict line; the last line
# is the count of passed and failed steps, and the exit status is 1 when a step failed.
# Every command's full output is kept in the log directory named at the start.
#
# Environment:
#   PIVOICECTL_CHROOT_DIR   the chroot (default /var/tmp/pivoicectl-chroot/FLAVOUR);
#                           the logs go to the same path plus ".logs"
#   PIVOICECTL_CHECK_TESTS  all (default: unit and integration) or unit
#   PIVOICECTL_CHECK_REF    a git ref to check instead of the working tree (git archive)
#   PIVOICECTL_MIRROR       the Debian mirror (default: the one apt uses on this machine)
#
# Needs root. It installs what it needs on this machine (debootstrap; for a foreign
# architecture qemu-user-static and binfmt-support) and reaches no network but the
# Debian mirror and the Python package index that pip on this machine is set up for.
set -euo pipefail

readonly FLAVOURS="trixie-amd64 trixie-arm64 bookworm"
readonly VENV=/root/pivoicectl-venv            # paths inside the chroot
readonly SRC=/root/pivoicectl-src
readonly STATE=/root/pivoicectl-check
readonly ROOM_ENV=$STATE/room.env
readonly BUILT_MARK=.pivoicectl-check-built       # in the chroot's top directory
readonly BUILDING_MARK=.pivoicectl-check-building
readonly FAIL_TAIL_LINES=60                      # of a failed step's log, on stderr

usage() {
  cat <<EOF
usage: $0 [--rebuild] FLAVOUR
Checks pivoicectl in a throwaway Debian chroot: installs it as a user does, runs the
README's flow on the simulated room and the test suite, one verdict line per step.
  FLAVOUR     one of: ${FLAVOURS// /, }
  --rebuild   throw away the chroot an earlier run built and build it again
  -h, --help  show this help
Environment: PIVOICECTL_CHROOT_DIR (default /var/tmp/pivoicectl-chroot/FLAVOUR),
PIVOICECTL_CHECK_TESTS=all|unit, PIVOICECTL_CHECK_REF=<git ref>, PIVOICECTL_MIRROR=<url>.
Run as root.
EOF
}

bad_usage() {
  echo "check-platform: $*" >&2
  echo "usage: $0 [--rebuild] FLAVOUR   (FLAVOUR: ${FLAVOURS// /, }; --help for more)" >&2
  exit 2
}

die() {
  echo "check-platform: $*" >&2
  exit 1
}

# ---------------------------------------------------------------- arguments

rebuild=0
flavour=""
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --rebuild) rebuild=1 ;;
    -*) bad_usage "unknown option '$arg'" ;;
    *)
      [[ -z "$flavour" ]] || bad_usage "one FLAVOUR only"
      flavour=$arg
      ;;
  esac
done
[[ -n "$flavour" ]] || bad_usage "FLAVOUR missing"

host_arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
case "$flavour" in
  trixie-amd64) suite=trixie; arch=amd64; pw_gen=system ;;
  trixie-arm64) suite=trixie; arch=arm64; pw_gen=system ;;
  bookworm) suite=bookworm; arch=$host_arch; pw_gen=bookworm ;;
  *) bad_usage "unknown FLAVOUR '$flavour'" ;;
esac
tests_scope=${PIVOICECTL_CHECK_TESTS:-all}
case "$tests_scope" in
  all) test_paths="" ;;
  unit) test_paths="tests/unit" ;;
  *) bad_usage "PIVOICECTL_CHECK_TESTS must be all or unit (got '$tests_scope')" ;;
esac
[[ $(id -u) -eq 0 ]] || { echo "check-platform: run as root (sudo $0 $flavour)" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
root=${PIVOICECTL_CHROOT_DIR:-/var/tmp/pivoicectl-chroot/$flavour}
root=${root%/}
[[ "$root" == /?* ]] || die "PIVOICECTL_CHROOT_DIR must be an absolute path other than / (got '$root')"
logdir=$root.logs

foreign=0
[[ "$arch" == "$host_arch" ]] || foreign=1
# Steps are slower under emulation: scale their time limits.
slow=1
((foreign == 0)) || slow=6

# ---------------------------------------------------------------- host side

# The URI of the Debian archive apt uses here: the entry for this release's own suite,
# else any Debian entry that is not the security archive.
detect_mirror() {
  if [[ -n "${PIVOICECTL_MIRROR:-}" ]]; then
    echo "${PIVOICECTL_MIRROR%/}"
    return
  fi
  local codename entries
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  entries=$(
    {
      shopt -s nullglob
      for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        # deb [options] URI SUITE COMPONENT...
        sed -E -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 {print $2, $3}'
      done
      for f in /etc/apt/sources.list.d/*.sources; do
        awk '
          function flush() {
            if (types ~ /(^| )deb( |$)/ && enabled != "no")
              for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
            types = ""; enabled = ""; nu = 0; ns = 0
          }
          /^[[:space:]]*#/ { next }
          /^[[:space:]]*$/ { flush(); next }
          tolower($1) == "types:" { $1 = ""; types = $0 }
          tolower($1) == "enabled:" { enabled = tolower($2) }
          tolower($1) == "uris:" { for (k = 2; k <= NF; k++) u[++nu] = $k }
          tolower($1) == "suites:" { for (k = 2; k <= NF; k++) s[++ns] = $k }
          END { flush() }
        ' "$f"
      done
    }
  )
  local uri
  uri=$(awk -v c="$codename" '$2 == c {print $1; exit}' <<<"$entries")
  [[ -n "$uri" ]] || uri=$(awk '$2 !~ /-security$/ && $1 ~ /debian\/?$/ {print $1; exit}' <<<"$entries")
  [[ -n "$uri" ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d}; set PIVOICECTL_MIRROR"
  echo "${uri%/}"
}

apt_updated=0
host_install() { # host_install [apt-get install options] PACKAGE...
  export DEBIAN_FRONTEND=noninteractive
  if ((apt_updated == 0)); then
    apt-get update -qq
    apt_updated=1
  fi
  apt-get install -y -qq --no-install-recommends "$@"
}

host_has_pkg() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

qemu_name() {
  case "$1" in
    arm64) echo aarch64 ;;
    amd64) echo x86_64 ;;
    armhf | armel) echo arm ;;
    *) echo "$1" ;;
  esac
}

# qemu-user-static and a binfmt_misc handler with the F flag, so that the chroot's
# foreign binaries run without a copy of the emulator inside it.
ensure_emulation() {
  local q entry conf
  q=$(qemu_name "$arch")
  if ! host_has_pkg qemu-user-static || ! host_has_pkg binfmt-support; then
    local codename target=()
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [[ "$codename" == bookworm ]]; then
      if ! grep -rqsE "^[^#]*bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb $mirror bookworm-backports main" >/etc/apt/sources.list.d/pivoicectl-backports.list
        apt_updated=0
      fi
      target=(-t bookworm-backports)
    fi
    host_install "${target[@]}" qemu-user-static
    host_install binfmt-support
  fi
  if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  entry=/proc/sys/fs/binfmt_misc/qemu-$q
  if [[ -e "$entry" ]] && ! grep -q '^flags:.*F' "$entry"; then
    echo -1 >"$entry" # registered without F: the emulator would have to be in the chroot
  fi
  if [[ ! -e "$entry" ]]; then
    conf=/usr/lib/binfmt.d/qemu-$q.conf
    if [[ -f "$conf" ]]; then
      grep -v '^#' "$conf" | head -n 1 >/proc/sys/fs/binfmt_misc/register
    else
      update-binfmts --enable "qemu-$q"
    fi
  fi
  if ! grep -q '^enabled' "$entry" || ! grep -q '^flags:.*F' "$entry"; then
    die "no enabled qemu-$q binfmt handler with the F flag"
  fi
  echo "emulation: $(grep '^interpreter' "$entry"), $(grep '^flags' "$entry")"
}

# Everything mounted under the chroot, deepest first.
mounts_under_root() {
  findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r "/") == 1 || $0 == r' | sort -r
}

# Processes whose root directory is the chroot: only this script starts them.
chroot_pids() {
  local p link
  for p in /proc/[0-9]*; do
    link=$(readlink "$p/root" 2>/dev/null) || continue
    [[ "$link" == "$root" ]] && echo "${p#/proc/}"
  done
  return 0
}

stop_chroot_processes() {
  local pids
  pids=$(chroot_pids)
  [[ -n "$pids" ]] || return 0
  echo "check-platform: stopping processes left in the chroot: ${pids//$'\n'/ }" >&2
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(chroot_pids)
    [[ -n "$pids" ]] || return 0
    sleep 0.5
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

unmount_all() {
  local m
  while read -r m; do
    [[ -n "$m" ]] || continue
    umount "$m" 2>/dev/null || umount -l "$m" || echo "check-platform: could not unmount $m" >&2
  done < <(mounts_under_root)
}

# A directory this script may delete: one it built (marker), or an empty one.
owned_by_us() {
  [[ -e "$root/$BUILT_MARK" || -e "$root/$BUILDING_MARK" ]] ||
    [[ -z "$(ls -A "$root" 2>/dev/null)" ]]
}

remove_chroot() {
  [[ "$(realpath -m "$root")" != / ]] || die "refusing to remove /"
  owned_by_us || die "$root is not a chroot this script built; choose another PIVOICECTL_CHROOT_DIR"
  [[ -z "$(mounts_under_root)" ]] || die "something is still mounted under $root"
  rm -rf --one-file-system "$root"
}

# Step "chroot": build it, or reuse a finished one.
build_chroot() {
  if [[ -e "$root/$BUILT_MARK" && "$(cat "$root/$BUILT_MARK")" == "$suite $arch" ]] && ((rebuild == 0)); then
    echo "reusing $suite $arch chroot in $root (built $(stat -c %y "$root/$BUILT_MARK" | cut -d. -f1))"
    return 0
  fi
  if [[ -e "$root" ]]; then
    echo "removing the old or unfinished chroot in $root"
    remove_chroot
  fi
  command -v debootstrap >/dev/null || host_install debootstrap
  ((foreign == 0)) || ensure_emulation
  mkdir -p "$root"
  touch "$root/$BUILDING_MARK"
  local opts=(--variant=minbase --arch="$arch")
  if ((foreign == 0)); then
    debootstrap "${opts[@]}" "$suite" "$root" "$mirror"
  else
    debootstrap "${opts[@]}" --foreign "$suite" "$root" "$mirror"
    echo "second stage inside the chroot (emulated $arch)"
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
      /debootstrap/debootstrap --second-stage
  fi
  echo "$suite $arch" >"$root/$BUILT_MARK"
  rm -f "$root/$BUILDING_MARK"
  echo "built $suite $arch chroot in $root"
}

# pip's own settings on this machine, so pip in the chroot reaches the same index:
# its config files, the PIP_* variables, and the local files and directories they name
# (constraints, certificates, find-links and file:// indexes, bind-mounted read-only).
pip_env=()
pip_dirs=()
collect_pip_settings() {
  local home=${HOME:-/root} f dest p name
  local files=(/etc/pip.conf /etc/xdg/pip/pip.conf "$home/.config/pip/pip.conf" "$home/.pip/pip.conf")
  [[ -z "${PIP_CONFIG_FILE:-}" ]] || files+=("$PIP_CONFIG_FILE")
  local text=""
  for f in "${files[@]}"; do
    [[ -f "$f" ]] || continue
    dest=$f
    [[ "$f" != "$home"/* ]] || dest=/root/${f#"$home"/}
    mkdir -p "$root$(dirname "$dest")"
    cp "$f" "$root$dest"
    text+=$'\n'$(cat "$f")
  done
  for name in $(compgen -e | grep '^PIP_' || true); do
    pip_env+=("$name=${!name}")
    text+=$'\n'${!name}
  done
  while read -r p; do
    p=${p#file://}
    p=${p%/}
    if [[ -f "$p" ]]; then
      mkdir -p "$root$(dirname "$p")"
      cp "$p" "$root$p"
    elif [[ -d "$p" ]]; then
      [[ "$(basename "$p")" != simple ]] || p=$(dirname "$p") # an index links to ../files
      case "$p" in
        / | /etc | /etc/* | /usr | /usr/* | /proc* | /sys* | /dev* | /run* | /var | /boot* | /bin* | /sbin* | /lib*) ;;
        *) pip_dirs+=("$p") ;;
      esac
    fi
  done < <(grep -oE "(file://)?/[^[:space:]\"',;]+" <<<"$text" | sort -u)
}

# The certificates that let this machine reach the index (a proxy's own CA, say). Again
# after every apt run in the chroot: ca-certificates there rewrites the bundle.
copy_host_ca() {
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    mkdir -p "$root/etc/ssl/certs"
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  fi
}

bind() { # bind SOURCE [ro]
  mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
  mount --make-slave "$root$1"
  [[ "${2:-}" != ro ]] || mount -o remount,bind,ro "$root$1"
}

prepare_chroot() {
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  # No service of the chroot's packages may start (or reach this machine's init).
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  collect_pip_settings
  copy_host_ca
  local m d
  for m in /proc /sys /dev /dev/pts /dev/shm /run; do
    bind "$m"
  done
  for d in "${pip_dirs[@]}"; do
    bind "$d" ro
  done
  # Nothing runs in the chroot now: rooms and files a killed run left behind can go.
  find "$root/tmp" -xdev -mindepth 1 -delete
  mkdir -p "$root$STATE"
  rm -f "$root$ROOM_ENV"
}

copy_repo() {
  rm -rf --one-file-system "$root$SRC"
  mkdir -p "$root$SRC"
  local git=(git -c "safe.directory=$repo" -C "$repo")
  if [[ -n "${PIVOICECTL_CHECK_REF:-}" ]]; then
    "${git[@]}" archive "$PIVOICECTL_CHECK_REF" | tar -x -C "$root$SRC"
    echo "copied $PIVOICECTL_CHECK_REF ($("${git[@]}" rev-parse --short "$PIVOICECTL_CHECK_REF")) to $SRC"
  elif command -v git >/dev/null && "${git[@]}" rev-parse --git-dir >/dev/null 2>&1; then
    # The working tree as git sees it: tracked and new files, not the ignored ones.
    "${git[@]}" ls-files -z --cached --others --exclude-standard |
      (cd "$repo" && while IFS= read -r -d '' f; do
        [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"
      done) |
      tar -C "$repo" --null -T - -cf - | tar -x -C "$root$SRC"
    echo "copied the working tree at $("${git[@]}" rev-parse --short HEAD)$("${git[@]}" diff --quiet HEAD 2>/dev/null || echo ' + local changes') to $SRC"
  else
    tar -C "$repo" --exclude=.git --exclude=.venv --exclude=build --exclude='*.egg-info' \
      --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache -cf - . |
      tar -x -C "$root$SRC"
    echo "copied $repo to $SRC"
  fi
}

# ---------------------------------------------------------------- steps

passed=0
failed=0
last_ok=0
step_pid=""
skipped=0
nstep=0

chroot_env=(HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb NO_COLOR=1 COLUMNS=120
  DEBIAN_FRONTEND=noninteractive
  "PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

in_chroot() { # in_chroot SCRIPT: bash inside the chroot with a clean environment
  chroot "$root" /usr/bin/env -i "${chroot_env[@]}" "${pip_env[@]}" /bin/bash -c "$1" 9>&-
}

last_line() {
  tr '\r' '\n' <"$1" | sed -E 's/\x1b\[[0-9;]*[A-Za-z]//g; s/[[:space:]]+$//' |
    grep -v '^$' | tail -n 1 | cut -c 1-200
}

# verdict NAME RC OK-CODES SECONDS LOG LIMIT [NOTE]; NOTE "last" = the log's last line
verdict() {
  local name=$1 rc=$2 ok=$3 secs=$4 log=$5 limit=$6 note=${7:-} last
  last=$(last_line "$log")
  if [[ " $ok " == *" $rc "* ]]; then
    last_ok=1
    passed=$((passed + 1))
    [[ "$note" != last ]] || note=$last
    echo "PASS $name ($secs s)${note:+: $note}"
  else
    last_ok=0
    failed=$((failed + 1))
    if ((rc == 124 || rc == 137)) && ((secs >= limit)); then
      echo "FAIL $name ($secs s): timed out after $limit s; last output: ${last:-none}"
    else
      echo "FAIL $name ($secs s): ${last:-no output} (exit $rc)"
    fi
    # The end of the step's log, so a CI run that keeps only this output shows why.
    echo "---- last $FAIL_TAIL_LINES lines of $log:" >&2
    tail -n "$FAIL_TAIL_LINES" "$log" | sed 's/^/  | /' >&2
  fi
}


# step NAME LIMIT OK-CODES SCRIPT [NOTE]: SCRIPT runs in the chroot, bounded by LIMIT s.
step() {
  local name=$1 limit=$(($2 * slow)) ok=$3 script=$4 note=${5:-} log rc=0 t0=$SECONDS
  nstep=$((nstep + 1))
  log=$(printf '%s/%02d-%s.log' "$logdir" "$nstep" "$name")
  {
    echo "# $name, in $root, limit $limit s:"
    echo "$script"
    echo "# ----"
  } >"$log"
  # In the background, so that Ctrl-C reaches the cleanup at once, not after the step.
  timeout -k 15 "$limit" chroot "$root" /usr/bin/env -i "${chroot_env[@]}" "${pip_env[@]}" \
    /bin/bash -c "set -euo pipefail; $script" </dev/null >>"$log" 2>&1 9>&- &
  step_pid=$!
  wait "$step_pid" || rc=$?
  step_pid=""
  verdict "$name" "$rc" "$ok" $((SECONDS - t0)) "$log" "$limit" "$note"
}

# host_step NAME FUNCTION: FUNCTION runs here, in a subshell that stops at its first error
# (so call host_step as a command of its own, never under if, && or ||).
host_step() {
  local name=$1 fn=$2 log rc=0 t0=$SECONDS
  nstep=$((nstep + 1))
  log=$(printf '%s/%02d-%s.log' "$logdir" "$nstep" "$name")
  ("$fn") </dev/null >"$log" 2>&1 9>&- &
  step_pid=$!
  wait "$step_pid" || rc=$?
  step_pid=""
  verdict "$name" "$rc" 0 $((SECONDS - t0)) "$log" 0 last
}

skip() {
  skipped=$((skipped + 1))
  echo "SKIP $1: $2"
}

kill_tree() { # kill_tree PID: the process and its descendants, by id
  local child
  for child in $(pgrep -P "$1" || true); do
    kill_tree "$child"
  done
  kill -TERM "$1" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$step_pid" ]]; then
    echo "check-platform: interrupted; stopping the running step" >&2
    kill_tree "$step_pid"
    wait "$step_pid" 2>/dev/null || true
  fi
  if [[ -d "$root/proc/self" && -f "$root$ROOM_ENV" ]]; then
    timeout -k 5 30 chroot "$root" /usr/bin/env -i "${chroot_env[@]}" /bin/bash -c \
      ". $ROOM_ENV && pivoicectl sim down" </dev/null >/dev/null 2>&1 9>&- || true
  fi
  stop_chroot_processes
  unmount_all
  exit "$rc"
}

summary() {
  echo "check-platform $flavour: logs in $logdir"
  if ((skipped > 0)); then
    echo "platform: $passed passed, $failed failed, $skipped skipped"
  else
    echo "platform: $passed passed, $failed failed"
  fi
}

# ---------------------------------------------------------------- main

# One run at a time per chroot; fd 9 holds the lock and no child inherits it.
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock -n 9 || die "another check-platform run is using $root"

# Leftovers of a run that was killed before it could clean up.
stop_chroot_processes
unmount_all

mirror=$(detect_mirror)
rm -rf "$logdir"
mkdir -p "$logdir"
echo "check-platform $flavour: Debian $suite $arch in $root, mirror $mirror, logs in $logdir"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

host_step chroot build_chroot
if ((!last_ok)); then
  summary
  exit 1
fi
prepare_chroot

flow=(doctor-before-setup setup doctor-after-setup measure parrot-self-test run-local sim-down)
prereqs_ok=1
host_step copy-repo copy_repo
((last_ok)) || prereqs_ok=0
if ((prereqs_ok)); then
  step system-deps 1800 0 "
    cd $SRC
    PIVOICECTL_PW_GEN=$pw_gen scripts/install-system-deps.sh
    apt-get install -y -qq --no-install-recommends python3-venv
    echo \"\$(dpkg --print-architecture): pipewire \$(dpkg-query -W -f='\${Version}' pipewire), wireplumber \$(dpkg-query -W -f='\${Version}' wireplumber), \$(python3 -V)\"
  " last
  ((last_ok)) || prereqs_ok=0
  copy_host_ca
fi
if ((prereqs_ok)); then
  step venv-install 1800 0 "
    rm -rf $VENV
    python3 -m venv $VENV
    cd $SRC
    $VENV/bin/python -m pip install '.[dev]'
    cd /
    echo \"installed: \$(pivoicectl --version) in $VENV\"
  " last
  ((last_ok)) || prereqs_ok=0
fi
if ((!prereqs_ok)); then
  for s in sim-up "${flow[@]}" tests; do skip "$s" "an earlier step failed"; done
  summary
  exit 1
fi

step sim-up 120 0 "
  cd /root
  out=\$(pivoicectl sim up)
  printf '%s\n' \"\$out\" >$ROOM_ENV
  eval \"\$out\"
  printf '%s\n' \"\$out\"
  echo \"room up in \$PIVOICECTL_SIM_DIR\"
"
if ((last_ok)); then
  room=". $ROOM_ENV; cd /root;"
  step doctor-before-setup 120 1 "$room pivoicectl doctor" "exit 1 before setup, as expected"
  step setup 180 0 "$room pivoicectl setup"
  step doctor-after-setup 120 0 "$room pivoicectl doctor"
  step measure 180 0 "$room pivoicectl measure" last
  step parrot-self-test 180 0 "$room pivoicectl parrot --self-test" last
  # The assistant against the built-in stand-in server while a simulated person asks.
  step run-local 150 0 "$room
    pivoicectl run --local --max-turns 1 --duration 30 >$STATE/run.out 2>&1 &
    run_pid=\$!
    sleep 3
    talk=0
    pivoicectl sim talk --say 'what time is it' || talk=\$?
    rc=0
    wait \$run_pid || rc=\$?
    echo \"sim talk exited \$talk, run exited \$rc; the output of run:\"
    cat $STATE/run.out
    exit \$rc
  " last
  step sim-down 60 0 "$room pivoicectl sim down; rm -f $ROOM_ENV"
else
  for s in "${flow[@]}"; do skip "$s" "the simulated room did not start"; done
  in_chroot "pivoicectl sim down" </dev/null >/dev/null 2>&1 || true
  rm -f "$root$ROOM_ENV"
fi

step tests 3600 0 "cd $SRC && $VENV/bin/python -m pytest -q -p no:cacheprovider $test_paths" last

summary
((failed == 0 && skipped == 0))
