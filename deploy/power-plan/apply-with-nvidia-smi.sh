#!/usr/bin/env bash
# Apply the wattwise optimizer's power-budget plan to this node's GPUs with
# nvidia-smi: one pass, for sites that prefer their own tooling to
# `wattwise agent apply-power-plan`. Run it every minute from a timer or cron
# (as root); docs/power-budgets.md describes the interface it implements.
#
#   apply-with-nvidia-smi.sh [--dry-run] [--restore]
#
# Each pass: GET $WATTWISE_OPTIMIZER_URL/v1/recommendations/power-budget?host=HOST
# with the bearer token in $WATTWISE_TOKEN_FILE; every GPU of this host that a
# plan caps gets the LOWEST planned_limit_w of all plans (clamped to its
# min/max, rounded down to whole watts) with `nvidia-smi -i N -pl W`. A GPU
# this script set that no plan caps any more goes back with
# `nvidia-smi -i N -pl <its default limit>`, and so does every one it set when
# the optimizer has not answered for $WATTWISE_SILENT_AFTER_S seconds. A GPU
# whose limit someone else changed after this script set it is left alone
# (and said so) while a plan caps it. What it set is kept in the state file.
# --dry-run prints the nvidia-smi commands it would run and changes nothing.
# --restore puts every GPU it set back to its default limit without asking the
# optimizer: run it once when the script stops being run.
#
# Environment: WATTWISE_OPTIMIZER_URL (required), WATTWISE_TOKEN_FILE
# (required), WATTWISE_HOST (default: uname -n), WATTWISE_STATE_FILE (default
# /var/lib/wattwise-power-plan/nvidia-smi.state), WATTWISE_SILENT_AFTER_S
# (default 600), WATTWISE_CURL_ARGS (more curl options, e.g. "--cacert FILE"),
# NVIDIA_SMI (default nvidia-smi). Needs bash 4, curl and jq.
#
# Exit status: 0 the plan was applied (or there was nothing to do), 1 no plan
# could be fetched or a limit could not be set, 2 a usage error or not root.
set -euo pipefail

URL="${WATTWISE_OPTIMIZER_URL:-}"
TOKEN_FILE="${WATTWISE_TOKEN_FILE:-}"
HOST="${WATTWISE_HOST:-$(uname -n)}"
STATE_FILE="${WATTWISE_STATE_FILE:-/var/lib/wattwise-power-plan/nvidia-smi.state}"
SILENT_AFTER_S="${WATTWISE_SILENT_AFTER_S:-600}"
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
PLAN_PATH=/v1/recommendations/power-budget
DRY_RUN=0
RESTORE=0

say() { printf 'apply-with-nvidia-smi: %s\n' "$*"; }
warn() { printf 'apply-with-nvidia-smi: %s\n' "$*" >&2; }
usage_error() { warn "$*"; exit 2; }

for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        --restore) RESTORE=1 ;;
        -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        *) usage_error "unknown argument: $arg (see --help)" ;;
    esac
done
if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    usage_error "changing GPU power limits needs root; run it as root, or with --dry-run to see what it would do"
fi
if [ "$RESTORE" -eq 0 ]; then
    [ -n "$URL" ] || usage_error "WATTWISE_OPTIMIZER_URL is not set"
    [ -r "$TOKEN_FILE" ] || usage_error "WATTWISE_TOKEN_FILE ($TOKEN_FILE) is not a readable file"
fi
[[ "$SILENT_AFTER_S" =~ ^[0-9]+$ ]] || usage_error "WATTWISE_SILENT_AFTER_S must be whole seconds"

# Numbers are compared and rounded with awk: bash has no floating point.
same() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(d < 0.5 && d > -0.5) }'; }
# The planned limit clamped to [min, max], in whole watts never above the plan
# (nor below min).
clamp() {
    awk -v w="$1" -v lo="$2" -v hi="$3" 'BEGIN {
        if (w > hi) w = hi; if (w < lo) w = lo
        f = int(w); if (f < lo) f = int(lo) + (lo > int(lo)); print f }'
}

# --- the state: what this script set, and when the optimizer last answered ----
BOOT_ID="$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)"
LAST_OK=""
declare -A SET_W=() ENFORCED_W=() DEFAULT_W=() HANDS_OFF=()
if [ -r "$STATE_FILE" ] && grep -qx "boot $BOOT_ID" "$STATE_FILE"; then
    # Limits do not survive a reboot: a state file of another boot is ignored.
    while read -r kind a b c d || [ -n "$kind" ]; do
        case "$kind" in
            last_ok) LAST_OK="$a" ;;
            gpu) SET_W[$a]="$b"; ENFORCED_W[$a]="$c"; DEFAULT_W[$a]="$d" ;;
            hands_off) HANDS_OFF[$a]=1 ;;
        esac
    done < "$STATE_FILE"
fi

save_state() {
    [ "$DRY_RUN" -eq 0 ] || return 0
    mkdir -p "$(dirname "$STATE_FILE")"
    {
        printf '# written by apply-with-nvidia-smi.sh: the GPU limits it set\n'
        printf 'boot %s\n' "$BOOT_ID"
        [ -z "$LAST_OK" ] || printf 'last_ok %s\n' "$LAST_OK"
        for gpu in "${!SET_W[@]}"; do
            printf 'gpu %s %s %s %s\n' "$gpu" "${SET_W[$gpu]}" "${ENFORCED_W[$gpu]}" "${DEFAULT_W[$gpu]}"
        done
        for gpu in "${!HANDS_OFF[@]}"; do printf 'hands_off %s\n' "$gpu"; done
    } > "$STATE_FILE.tmp"
    mv "$STATE_FILE.tmp" "$STATE_FILE"
}

# --- the GPUs: index, enforced, default, min and max limit (W) -----------------
declare -A NOW_W=() DEF_W=() MIN_W=() MAX_W=()
gpus="$("$NVIDIA_SMI" --query-gpu=index,enforced.power.limit,power.default_limit,power.min_limit,power.max_limit --format=csv,noheader,nounits)"
while IFS=', ' read -r index enforced default low high; do
    [ -n "$index" ] || continue
    if ! [[ "$enforced$default$low$high" =~ ^[0-9.]+$ ]]; then
        warn "gpu$index: nvidia-smi reports no power limits ($enforced, $default, $low, $high): skipped"
        continue
    fi
    NOW_W[$index]="$enforced"; DEF_W[$index]="$default"; MIN_W[$index]="$low"; MAX_W[$index]="$high"
done <<< "$gpus"

FAILED=0
# set_limit GPU WATTS WHY: nvidia-smi -pl, then the enforced limit read back.
set_limit() {
    local gpu="$1" watts="$2" why="$3" enforced
    if [ "$DRY_RUN" -eq 1 ]; then
        say "gpu$gpu: would run: $NVIDIA_SMI -i $gpu -pl $watts (now ${NOW_W[$gpu]} W): $why"
        return 1
    fi
    if ! "$NVIDIA_SMI" -i "$gpu" -pl "$watts" > /dev/null; then
        warn "gpu$gpu: nvidia-smi -i $gpu -pl $watts failed"
        FAILED=1
        return 1
    fi
    enforced="$("$NVIDIA_SMI" -i "$gpu" --query-gpu=enforced.power.limit --format=csv,noheader,nounits)"
    say "gpu$gpu: limit $watts W (was ${NOW_W[$gpu]} W, enforces $enforced W): $why"
    NOW_W[$gpu]="$enforced"
}

# mine GPU: whether the limit this script set is still the enforced one; when
# someone else changed it, forget it (and keep hands off while a plan caps it).
mine() {
    local gpu="$1" capped="$2"
    [ -n "${SET_W[$gpu]:-}" ] || return 1
    if [ -z "${NOW_W[$gpu]:-}" ] || same "${NOW_W[$gpu]}" "${ENFORCED_W[$gpu]}"; then
        return 0
    fi
    warn "gpu$gpu: enforces ${NOW_W[$gpu]} W, not the ${ENFORCED_W[$gpu]} W set here: someone else changed it; leaving it alone"
    unset "SET_W[$gpu]" "ENFORCED_W[$gpu]" "DEFAULT_W[$gpu]"
    [ "$capped" -eq 0 ] || HANDS_OFF[$gpu]=1
    return 1
}

restore() {
    local gpu="$1" why="$2"
    [ -n "${NOW_W[$gpu]:-}" ] || { FAILED=1; return 0; }
    if set_limit "$gpu" "$(clamp "${DEFAULT_W[$gpu]}" 0 "${DEFAULT_W[$gpu]}")" "back to its default limit: $why"; then
        unset "SET_W[$gpu]" "ENFORCED_W[$gpu]" "DEFAULT_W[$gpu]"
    fi
}

# restore_all WHY: every GPU this script set (and nobody changed since) to its default.
restore_all() {
    for gpu in $(printf '%s\n' "${!SET_W[@]}" | sort -n); do
        if mine "$gpu" 0; then
            restore "$gpu" "$1"
        fi
    done
}

if [ "$RESTORE" -eq 1 ]; then
    restore_all "asked to (--restore)"
    save_state
    exit "$FAILED"
fi

# --- the plan -------------------------------------------------------------------
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
now="$(date +%s)"
# The token goes to curl on its standard input, never on its command line (ps).
# shellcheck disable=SC2086 # WATTWISE_CURL_ARGS is meant to split into options
status="$(printf 'header = "Authorization: Bearer %s"\n' "$(tr -d '[:space:]' < "$TOKEN_FILE")" |
    curl --config - --silent --show-error --max-time 10 --get \
        --data-urlencode "host=$HOST" --output "$work/plan.json" --write-out '%{http_code}' \
        ${WATTWISE_CURL_ARGS:-} "${URL%/}$PLAN_PATH")" || status="000"

if [ "$status" = 200 ] && jq -e '.items | type == "array"' "$work/plan.json" > /dev/null 2>&1; then
    LAST_OK="$now"
    # "gpu limit" for every GPU of this host, the lowest limit over all plans.
    jq -r --arg host "$HOST" '[.items[] | (.caps // [])[] | select(.host == $host
            and (.gpu | type) == "number" and (.planned_limit_w | type) == "number")
        | {gpu, w: .planned_limit_w}] | group_by(.gpu)[] | "\(.[0].gpu) \(map(.w) | min)"' \
        "$work/plan.json" > "$work/targets"
    declare -A TARGET=()
    while read -r gpu watts; do
        if [ -z "${NOW_W[$gpu]:-}" ]; then
            warn "the plan caps gpu$gpu, which this node does not have (or reports no limits): refused"
            continue
        fi
        TARGET[$gpu]="$(clamp "$watts" "${MIN_W[$gpu]}" "${MAX_W[$gpu]}")"
    done < "$work/targets"
    for gpu in "${!HANDS_OFF[@]}"; do
        [ -n "${TARGET[$gpu]:-}" ] || unset "HANDS_OFF[$gpu]"
    done
    for gpu in $(printf '%s\n' "${!NOW_W[@]}" | sort -n); do
        target="${TARGET[$gpu]:-}"
        capped=0
        [ -z "$target" ] || capped=1
        if mine "$gpu" "$capped"; then
            if [ -z "$target" ]; then
                restore "$gpu" "no plan caps it any more"
                continue
            fi
            same "${SET_W[$gpu]}" "$target" && continue
        elif [ -n "${HANDS_OFF[$gpu]:-}" ] || [ -z "$target" ] || same "${NOW_W[$gpu]}" "$target"; then
            continue
        fi
        if set_limit "$gpu" "$target" "the lowest planned limit"; then
            SET_W[$gpu]="$target"; ENFORCED_W[$gpu]="${NOW_W[$gpu]}"; DEFAULT_W[$gpu]="${DEF_W[$gpu]}"
        fi
    done
else
    case "$status" in
        000) warn "cannot reach the optimizer at $URL" ;;
        401 | 403) warn "the optimizer refused the token in $TOKEN_FILE (HTTP $status): check it has the read scope" ;;
        200) warn "the optimizer's answer is not a power-budget plan" ;;
        *) warn "the optimizer answered HTTP $status" ;;
    esac
    FAILED=1
    silent_s=$(( now - ${LAST_OK:-$now} ))
    if [ "${#SET_W[@]}" -gt 0 ] && [ "$silent_s" -ge "$SILENT_AFTER_S" ]; then
        restore_all "the optimizer has given no plan for ${silent_s} s"
    fi
fi
save_state
exit "$FAILED"
