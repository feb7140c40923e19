#!/usr/bin/env bash
# Remove the wattwise agent: the same as `install-agent.sh --uninstall`.
#   uninstall-agent.sh [--purge [--discard-unsent]] [--dry-run]
# Keeps /var/lib/wattwise (the write-ahead log), /etc/wattwise and the user
# unless --purge is given; a purge refuses to delete lines never delivered unless
# --discard-unsent is given.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/install-agent.sh" --uninstall "$@"
