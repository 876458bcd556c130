# shellcheck shell=bash
# Sourced by scripts/fault-test, scripts/fuzz and .ci/run: the contacts-api binary they run is
# the release build (the one users run), built once and shared through CONTACTS_API_BIN.

# Sets and exports CONTACTS_API_BIN: kept when already set (it must be executable), else the
# release binary of this tree, built first (cargo does nothing when it is up to date).
# Returns non-zero instead of exiting, so callers decide what to do.
resolve_contacts_api_bin() {
    if [[ -n ${CONTACTS_API_BIN:-} ]]; then
        if [[ ! -x $CONTACTS_API_BIN ]]; then
            echo "error: CONTACTS_API_BIN=$CONTACTS_API_BIN is not an executable file" >&2
            return 1
        fi
        echo "using CONTACTS_API_BIN=$CONTACTS_API_BIN"
        return 0
    fi
    local root target_dir
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    target_dir=${CARGO_TARGET_DIR:-$root/target}
    [[ $target_dir == /* ]] || target_dir="$root/$target_dir"
    echo "+ cargo build --release --bin contacts-api (CONTACTS_API_BIN unset)"
    (cd "$root" && cargo build --release --quiet --bin contacts-api) || return 1
    CONTACTS_API_BIN="$target_dir/release/contacts-api"
    export CONTACTS_API_BIN
}
