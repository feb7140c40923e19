#!/usr/bin/env bash
# Install the wattwise agent on a GPU node, or remove it again.
#
#   install-agent.sh [--from WHEEL|REQUIREMENT] [--config-file FILE] [--upgrade] [--dry-run]
#   install-agent.sh --uninstall [--purge [--discard-unsent]] [--dry-run]
#
# Install: a virtual environment under /opt/wattwise, the wattwise agent
# pip-installed into it (the package without extras: the agent alone, none of
# the optimizer's libraries) from --from or else the newest wheel in the
# repository's dist/ (`make wheel` builds it), then `wattwise agent install`
# for the system user, the config skeleton, the secret files and the systemd
# unit (that command owns those; this script does not repeat them), then
# enable and, once the configuration names a store, start. Every step is
# skipped when already in place, so running the script again changes nothing.
#
# Uninstall: stop, disable and remove the unit, remove the virtual environment.
# The power-plan applier's unit (`wattwise agent install --power-plan`) goes
# first, while its program is still there: as it stops, it puts the GPUs'
# default power limits back. The write-ahead log (/var/lib/wattwise, possibly holding lines never
# delivered), the configuration and secrets (/etc/wattwise) and the user stay
# unless --purge is given. Where the installed wattwise has `wattwise agent
# uninstall`, that command does all but the venv: its purge refuses to delete
# lines never delivered unless --discard-unsent is given. An older one cannot
# count them, so then the script's purge refuses while the log holds any
# non-empty segment, delivered or not.
#
# Overrides for other layouts (and for tests): WATTWISE_PREFIX, WATTWISE_PYTHON,
# WATTWISE_CONFIG, SYSTEMCTL.
set -euo pipefail

PREFIX="${WATTWISE_PREFIX:-/opt/wattwise}"
PYTHON="${WATTWISE_PYTHON:-python3}"
CONFIG="${WATTWISE_CONFIG:-/etc/wattwise/agent.toml}"
SYSTEMCTL="${SYSTEMCTL:-systemctl}"
# Fixed by the unit (StateDirectory=, ConfigurationDirectory=) and `wattwise agent install`.
STATE_DIR=/var/lib/wattwise
CONFIG_DIR=/etc/wattwise
UNIT=wattwise-agent.service
UNIT_FILE="/etc/systemd/system/$UNIT"
POWER_PLAN_UNIT=wattwise-power-plan.service
POWER_PLAN_STATE_DIR=/var/lib/wattwise-power-plan
SERVICE_USER=wattwise

# The repository this script sits in; `make wheel` leaves the wheel in its dist/.
DIST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/dist"

SPEC=""
CONFIG_FILE=""
UPGRADE=0
UNINSTALL=0
PURGE=0
DISCARD_UNSENT=0
DRY_RUN=0

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
}

say() {
    printf '%s\n' "$*"
}

die() {
    printf 'install-agent.sh: %s\n' "$*" >&2
    exit 1
}

# Print a command, then run it unless --dry-run.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ $DRY_RUN -eq 0 ]]; then
        "$@"
    fi
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --from) SPEC="${2:?--from needs a wheel, or a requirement for your package index}"; shift ;;
            --config-file) CONFIG_FILE="${2:?--config-file needs a file}"; shift ;;
            --upgrade) UPGRADE=1 ;;
            --uninstall) UNINSTALL=1 ;;
            --purge) PURGE=1 ;;
            --discard-unsent) DISCARD_UNSENT=1 ;;
            --dry-run) DRY_RUN=1 ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done
    if [[ $PURGE -eq 1 && $UNINSTALL -eq 0 ]]; then
        die "--purge only goes with --uninstall"
    fi
    if [[ $DISCARD_UNSENT -eq 1 && $PURGE -eq 0 ]]; then
        die "--discard-unsent only goes with --uninstall --purge"
    fi
    if [[ -n $CONFIG_FILE && ! -r $CONFIG_FILE ]]; then
        die "cannot read --config-file $CONFIG_FILE"
    fi
}

require_root() {
    if [[ $DRY_RUN -eq 0 && $(id -u) -ne 0 ]]; then
        die "needs root (it creates a system user and a systemd unit); add --dry-run to see the steps"
    fi
}

make_venv() {
    if [[ -x "$PREFIX/bin/python" ]] && "$PREFIX/bin/python" -c '' 2>/dev/null; then
        say "keep: virtual environment $PREFIX"
        return
    fi
    # The unit needs Python 3.11 or newer; refuse early rather than fail in pip.
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is older than 3.11; set WATTWISE_PYTHON to a newer interpreter"
    run "$PYTHON" -m venv "$PREFIX"
}

# The newest wheel `make wheel` left in the repository's dist/, unless --from named one.
choose_package() {
    if [[ -n $SPEC ]]; then
        return
    fi
    local wheels=()
    if [[ -d $DIST_DIR ]]; then
        mapfile -t wheels < <(find "$DIST_DIR" -maxdepth 1 -name 'wattwise-*-py3-none-any.whl' | sort -V)
    fi
    if [[ ${#wheels[@]} -eq 0 ]]; then
        die "no wheel to install: run 'make wheel' in the repository (it writes $DIST_DIR/wattwise-VERSION-py3-none-any.whl), or give --from WHEEL, or --from wattwise==VERSION for a package index"
    fi
    SPEC="${wheels[-1]}"
}

install_package() {
    local upgrade=()
    if [[ $UPGRADE -eq 1 ]]; then
        upgrade=(--upgrade)
    fi
    # pip leaves a requirement that is already satisfied alone, so a second run is a no-op.
    run "$PREFIX/bin/python" -m pip install --quiet "${upgrade[@]}" "$SPEC"
}

install_config_file() {
    if [[ -z $CONFIG_FILE ]]; then
        return
    fi
    if cmp -s "$CONFIG_FILE" "$CONFIG"; then
        say "keep: $CONFIG (same as $CONFIG_FILE)"
        return
    fi
    # Readable by the agent's group, never writable by the agent.
    run install -m 0640 -o root -g "$SERVICE_USER" "$CONFIG_FILE" "$CONFIG"
}

start_if_configured() {
    if [[ $DRY_RUN -eq 1 ]]; then
        say "would start $UNIT once $CONFIG names a store (wattwise agent check-config)"
        return
    fi
    # A skeleton without influx.url would only exit with a configuration error.
    if "$PREFIX/bin/wattwise" agent check-config "$CONFIG" >/dev/null 2>&1; then
        run "$SYSTEMCTL" enable --now "$UNIT"
        say "done: the agent is running (systemctl status $UNIT)"
    else
        say "done: edit $CONFIG (at least influx.url) and the secrets in $CONFIG_DIR, then:"
        say "  $PREFIX/bin/wattwise agent check-config $CONFIG && $SYSTEMCTL start $UNIT"
    fi
}

install_agent() {
    require_root
    choose_package
    make_venv
    install_package
    local dry=()
    if [[ $DRY_RUN -eq 1 ]]; then
        dry=(--dry-run)
    fi
    if [[ ! -x "$PREFIX/bin/wattwise" ]]; then
        say "would run: $PREFIX/bin/wattwise agent install --config $CONFIG"
    else
        # User, config skeleton (never overwritten), secret files, unit, enable;
        # idempotent, and it starts the agent only once its config would run.
        run "$PREFIX/bin/wattwise" agent install --config "$CONFIG" "${dry[@]}"
    fi
    install_config_file
    start_if_configured
}

# Refuse to delete anything that does not look like the virtual environment.
remove_venv() {
    if [[ ! -e $PREFIX ]]; then
        say "gone: $PREFIX"
        return
    fi
    [[ -f "$PREFIX/pyvenv.cfg" ]] || die "$PREFIX has no pyvenv.cfg; not removing it"
    run rm -rf -- "$PREFIX"
}

# remove_unit NAME: stop, disable and remove /etc/systemd/system/NAME.
remove_unit() {
    local unit=$1
    local unit_file="/etc/systemd/system/$unit"
    if [[ ! -e $unit_file ]]; then
        say "gone: $unit_file"
        return
    fi
    run "$SYSTEMCTL" disable --now "$unit"
    run rm -f -- "$unit_file"
    run "$SYSTEMCTL" daemon-reload
}

purge_data() {
    local path
    for path in "$STATE_DIR" "$POWER_PLAN_STATE_DIR" "$CONFIG_DIR" "$UNIT_FILE.d" \
        "/etc/systemd/system/$POWER_PLAN_UNIT.d"; do
        if [[ -e $path ]]; then
            run rm -rf -- "$path"
        fi
    done
    if id "$SERVICE_USER" >/dev/null 2>&1; then
        run userdel "$SERVICE_USER"
    fi
}

# The installed agent's own `wattwise agent uninstall`, where it has one (older
# versions do not): it removes the units and, with --purge, the data.
uninstall_with_the_agent() {
    local program="$PREFIX/bin/wattwise"
    [[ -x $program ]] && "$program" agent uninstall --help >/dev/null 2>&1 || return 1
    local flags=(--config "$CONFIG")
    [[ $PURGE -eq 1 ]] && flags+=(--purge)
    [[ $DISCARD_UNSENT -eq 1 ]] && flags+=(--discard-unsent)
    # A dry run of the command changes nothing and says what it would do.
    [[ $DRY_RUN -eq 1 ]] && flags+=(--dry-run)
    printf '+ %q agent uninstall' "$program"
    printf ' %q' "${flags[@]}"
    printf '\n'
    "$program" agent uninstall "${flags[@]}" || die "wattwise agent uninstall failed; nothing more was removed"
}

# An installed wattwise too old to have `wattwise agent uninstall` cannot count the
# lines its log never delivered, and a segment stays after its lines are sent: so a
# purge with no --discard-unsent stops at any non-empty segment, before anything is
# removed.
refuse_purging_segments() {
    [[ $PURGE -eq 1 && $DISCARD_UNSENT -eq 0 ]] || return 0
    [[ -d $STATE_DIR ]] || return 0
    local segments
    segments=$(find "$STATE_DIR" -type f -name '*.seg' -size +0 | wc -l)
    [[ $segments -eq 0 ]] && return 0
    die "$STATE_DIR holds $segments write-ahead log segment(s) that may hold lines never" \
        "delivered, and the installed wattwise is too old to count them; nothing was removed." \
        "Let the agent run until its store has them, or add --discard-unsent to delete them."
}

uninstall_agent() {
    require_root
    if uninstall_with_the_agent; then
        remove_venv
        return
    fi
    refuse_purging_segments
    # Only where `wattwise agent install --power-plan` put it; stopping it restores
    # the default limits, which needs the program the venv holds.
    if [[ -e /etc/systemd/system/$POWER_PLAN_UNIT ]]; then
        remove_unit "$POWER_PLAN_UNIT"
    fi
    remove_unit "$UNIT"
    remove_venv
    if [[ $PURGE -eq 1 ]]; then
        purge_data
        if [[ $DRY_RUN -eq 1 ]]; then
            say "would purge the write-ahead log, configuration, secrets and user (dry run: nothing changed)"
        else
            say "done: purged the write-ahead log, configuration, secrets and user"
        fi
    else
        local keep=kept
        if [[ $DRY_RUN -eq 1 ]]; then
            keep="would keep"
        fi
        say "$keep: $STATE_DIR (write-ahead log: lines not yet delivered), $CONFIG_DIR,"
        say "      user $SERVICE_USER, drop-ins in $UNIT_FILE.d; --uninstall --purge removes them"
    fi
}

main() {
    parse_args "$@"
    if [[ $DRY_RUN -eq 1 ]]; then
        say "dry run: printing the steps, changing nothing"
    fi
    if [[ $UNINSTALL -eq 1 ]]; then
        uninstall_agent
    else
        install_agent
    fi
}

main "$@"
