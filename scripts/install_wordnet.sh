#!/usr/bin/env bash
# Installs the WordNet 3.0 database from Debian/Ubuntu packages into /usr/share/wordnet.
#
# hf_cpt.synth.corrupt needs WordNet offline; nltk's own downloader needs the internet, the distribution's
# packages do not. hf_cpt.synth.wordnet copies the installed database into an nltk data root on first use.
# Idempotent: does nothing when the database is already there ($WORDNET_DIR, default /usr/share/wordnet).
#
# It never fails for want of root or apt: it says what to install, and the tests that need WordNet are skipped
# with the same advice. With HF_CPT_REQUIRE_WORDNET=1 (CI) a database it cannot install is an error.
set -euo pipefail

packages=(wordnet-base wordnet-sense-index)
database="${WORDNET_DIR:-/usr/share/wordnet}"
advice="sudo apt-get update && sudo apt-get install -y ${packages[*]}"

give_up() {
  echo "WordNet: $1; install it as root with: $advice (or set WORDNET_DIR to a folder holding the WordNet 3.0" \
    "database). Until then the tests that need WordNet are skipped." >&2
  if [ "${HF_CPT_REQUIRE_WORDNET:-0}" = "1" ]; then
    echo "WordNet: HF_CPT_REQUIRE_WORDNET=1, so this is an error." >&2
    exit 1
  fi
  exit 0
}

if [ -f "$database/data.noun" ] && [ -f "$database/index.sense" ]; then
  echo "WordNet: database already in $database."
  exit 0
fi
if [ "$database" != /usr/share/wordnet ]; then
  give_up "no database in WORDNET_DIR=$database (the packages install into /usr/share/wordnet)"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  give_up "no database in $database and no apt-get on this machine"
fi
if [ "$(id -u)" -ne 0 ]; then
  give_up "no database in $database, and installing ${packages[*]} needs root"
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the packages yet (e.g. a fresh container).
if ! apt-cache show "${packages[@]}" >/dev/null 2>&1; then
  apt-get update || true
fi
if ! apt-get install -y --no-install-recommends "${packages[@]}"; then
  give_up "apt-get could not install ${packages[*]}"
fi
echo "WordNet: installed ${packages[*]}."
