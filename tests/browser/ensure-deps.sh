#!/usr/bin/env bash
# The browser tests' system packages: Debian's Chromium, its chromedriver and a CJK font.
# Installs what is missing when run as root; otherwise stops, saying how.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
fc-list :lang=zh-cn family 2>/dev/null | grep -q "Noto Sans CJK" || need+=(fonts-noto-cjk)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "The browser tests need: ${need[*]}." >&2
  echo "Install them as root: apt-get install -y chromium chromium-driver fonts-noto-cjk" >&2
  exit 1
fi
echo "installing ${need[*]} for the browser tests…"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-noto-cjk
