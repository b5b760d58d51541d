#!/usr/bin/env bash
# Install the Debian packages WeasyPrint and the invoices need, and chromium (the dashboard
# page's browser test, headless), where we can.
set -u
pkgs=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core fonts-noto-cjk poppler-utils chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
  echo "note: missing Debian packages ${missing[*]}; install them as root (PDF rendering is slower or fails without them)" >&2
  exit 0
fi
echo "installing Debian packages: ${missing[*]}" >&2
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
  || echo "note: could not install ${missing[*]}" >&2
