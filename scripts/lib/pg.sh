# shellcheck shell=bash
# Sourced by scripts/test, scripts/serve and .ci/run: start the local PostgreSQL cluster when it
# does not answer. Functions return non-zero instead of exiting, so callers decide what to do.

PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PG_WAIT_SECONDS="${PG_WAIT_SECONDS:-30}"

# True when a postgres:// URL names this machine (or no host, i.e. the local socket), so starting
# the local cluster can help. Any other host is left alone.
pg_url_is_local() {
    local url=$1 host
    if [[ $url =~ ^postgres(ql)?://([^@/?]*@)?(\[[^]]*\]|[^:/?]*) ]]; then
        host=${BASH_REMATCH[3]}
    else
        return 1
    fi
    case "$host" in
        "" | localhost | 127.0.0.1 | "[::1]") return 0 ;;
        *) return 1 ;;
    esac
}

# Starts the local cluster when `pg_isready` fails on PG_HOST:PG_PORT, then waits until it
# accepts connections (at most PG_WAIT_SECONDS).
ensure_postgres() {
    if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
        echo "PostgreSQL is accepting connections on $PG_HOST:$PG_PORT"
        return 0
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        echo "error: PostgreSQL does not answer on $PG_HOST:$PG_PORT and pg_ctlcluster/pg_isready are not installed" >&2
        return 1
    fi
    local version
    # shellcheck disable=SC2012 # version directories are plain numbers
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [[ -z $version ]]; then
        echo "error: PostgreSQL does not answer on $PG_HOST:$PG_PORT and no cluster exists under /etc/postgresql" >&2
        return 1
    fi
    local start=(pg_ctlcluster --skip-systemctl-redirect "$version" main start)
    # pg_ctlcluster runs as root or as the cluster owner; otherwise try sudo without a prompt.
    if [[ $(id -u) -ne 0 && $(id -un) != postgres ]] && command -v sudo >/dev/null 2>&1; then
        start=(sudo -n "${start[@]}")
    fi
    echo "PostgreSQL does not answer on $PG_HOST:$PG_PORT; running: ${start[*]}"
    if ! "${start[@]}"; then
        # "already running" also lands here; the wait below tells whether it answers.
        echo "warning: '${start[*]}' failed; waiting for PostgreSQL anyway" >&2
    fi
    local waited=0
    until pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; do
        if ((waited >= PG_WAIT_SECONDS)); then
            echo "error: PostgreSQL did not accept connections on $PG_HOST:$PG_PORT within ${PG_WAIT_SECONDS}s" >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "PostgreSQL is accepting connections on $PG_HOST:$PG_PORT (after ${waited}s)"
}
