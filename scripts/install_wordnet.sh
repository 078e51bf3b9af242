#!/usr/bin/env bash
# Installs the WordNet 3.0 database from Debian/Ubuntu packages into /usr/share/wordnet.
#
# hf_cpt.synth.corrupt needs WordNet offline; nltk's own downloader needs the internet, the distribution's
# packages do not. hf_cpt.synth.wordnet copies the installed database into an nltk data root on first use.
# Idempotent: does nothing when both packages are already installed.
set -euo pipefail

packages=(wordnet-base wordnet-sense-index)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "WordNet: ${packages[*]} already installed."
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "WordNet: ${missing[*]} missing; install as root with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the packages yet (e.g. a fresh container).
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
  apt-get update
fi
apt-get install -y --no-install-recommends "${missing[@]}"
echo "WordNet: installed ${missing[*]}."
