#!/usr/bin/env bash
# Installs the system libraries qsh links against (Debian/Ubuntu).
set -euo pipefail
packages=(libreadline-dev libopenblas-dev libdnnl-dev libssl-dev libjpeg62-turbo-dev libpng-dev librsvg2-bin tmux)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
