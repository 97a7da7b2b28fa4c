#!/usr/bin/env bash
# Debian packages the tests need: headless Chromium renders report.html; OpenSSH's server and
# client are the loopback "edge devices" of tests/test_runners_ssh.py (the tests start sshd themselves).
# Installed only when missing, so repeated `make test` runs stay fast.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing ${need[*]} (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# sshd's privilege separation directory (the package's service would create it; the tests start sshd by hand)
if [ ! -d /run/sshd ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO mkdir -p /run/sshd
fi
