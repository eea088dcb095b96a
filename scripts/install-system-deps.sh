#!/usr/bin/env bash
# Installs the Debian packages pivoicectl's simulated room and tests need.
#
# PIVOICECTL_PW_GEN selects the PipeWire generation:
#   auto (default) - Debian 13 trixie (and Raspberry Pi OS trixie): its own PipeWire 1.4
#                    and WirePlumber 0.5; Debian 12 bookworm: `backports`
#   backports      - bookworm only: PipeWire 1.4.x + WirePlumber 0.5 from bookworm-backports
#                    (closest to Raspberry Pi OS trixie)
#   bookworm       - bookworm only: PipeWire 0.3.65 + WirePlumber 0.4.13 (Debian's own)
#   system         - whatever the distribution's default suite has
# Run as root. Not root: prints what is missing and exits 1. A generation the release
# cannot give is a one-line error with exit 2.
set -euo pipefail

# PIVOICECTL_OS_RELEASE: another os-release file (the tests use it to play trixie).
codename="$(. "${PIVOICECTL_OS_RELEASE:-/etc/os-release}" && echo "${VERSION_CODENAME:-}")"
gen="${PIVOICECTL_PW_GEN:-auto}"
if [[ "$gen" == auto ]]; then
  if [[ "$codename" == bookworm ]]; then gen=backports; else gen=system; fi
fi
case "$gen" in
  backports|bookworm)
    if [[ "$codename" != bookworm ]]; then
      echo "error: PIVOICECTL_PW_GEN=$gen needs Debian bookworm, this is '${codename:-unknown}'" \
        "— use PIVOICECTL_PW_GEN=system (its own PipeWire)" >&2
      exit 2
    fi ;;
  system) ;;
  *) echo "error: PIVOICECTL_PW_GEN must be auto, backports, bookworm or system (got '$gen')" >&2
     exit 2 ;;
esac
pw_pkgs=(pipewire pipewire-bin pipewire-pulse pipewire-alsa wireplumber
         libpipewire-0.3-modules libspa-0.2-modules)
other_pkgs=(dbus-daemon pulseaudio-utils libportaudio2 libasound2-plugins
            espeak-ng sox python3-venv systemd)

missing=()
for p in "${pw_pkgs[@]}" "${other_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

want_version() {
  # prints the installed pipewire version, or nothing
  dpkg-query -W -f='${Version}' pipewire 2>/dev/null || true
}

installed="$(want_version)"
case "$gen" in
  backports) [[ "$installed" == 1.* ]] || missing+=(pipewire) ;;
  bookworm)  [[ "$installed" == 0.3.* ]] || missing+=(pipewire) ;;
esac

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system packages: all present (pipewire $installed)"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "run as root: sudo PIVOICECTL_PW_GEN=$gen $0" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
target=()
if [[ "$gen" == backports ]]; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" \
    > /etc/apt/sources.list.d/pivoicectl-backports.list
  target=(-t bookworm-backports)
fi
apt-get update -qq
if [[ "$gen" == bookworm ]]; then
  # Going back from the backports generation: remove it whole (its libraries have
  # other package names, e.g. libwireplumber-0.5-0), then install Debian's own.
  if [[ "$installed" == 1.* ]]; then
    mapfile -t newer < <(dpkg-query -W -f='${Package} ${Version}\n' 2>/dev/null \
      | awk '$2 ~ /bpo/ && $1 ~ /pipewire|wireplumber|libspa|gstreamer1.0-pipewire/ {print $1}')
    apt-get remove -y -qq "${newer[@]}"
  fi
  apt-get install -y -qq --no-install-recommends "${pw_pkgs[@]}" "${other_pkgs[@]}"
else
  apt-get install -y -qq --no-install-recommends "${target[@]}" "${pw_pkgs[@]}"
  apt-get install -y -qq --no-install-recommends "${other_pkgs[@]}"
fi
echo "system packages: installed (pipewire $(want_version))"
