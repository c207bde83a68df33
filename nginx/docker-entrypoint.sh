#!/bin/sh
# Runs nginx with an upstream of every replica's address, and keeps it that way.
#
# Why: nginx resolves upstream names once, at start, and Docker's DNS answers with a long
# TTL, so after `--scale app=N` a plain `server app:8000` would keep sending everything to
# the replicas it saw first. This loop asks DNS for all addresses of UPSTREAM_HOST ("app"
# under compose, "tasks.app" under swarm) every RESOLVE_INTERVAL seconds and, when the
# set changes, renders the upstream again and reloads nginx (old workers drain).
set -eu

UPSTREAM_HOST=${UPSTREAM_HOST:-app}
UPSTREAM_PORT=${UPSTREAM_PORT:-8000}
LISTEN_PORT=${LISTEN_PORT:-8080}
RESOLVE_INTERVAL=${RESOLVE_INTERVAL:-1}
if [ "${ACCESS_LOG:-0}" = 1 ]; then
    access_log="/tmp/access.log upstream buffer=256k flush=2s"
else
    access_log="off"
fi
TEMPLATE=/etc/hscale/nginx.conf.template
CONF=/tmp/nginx.conf

addresses() {
    getent ahostsv4 "$UPSTREAM_HOST" 2>/dev/null | awk '{print $1}' | sort -u
}

render() {
    servers=$(for ip in $1; do
        printf '        server %s:%s max_fails=3 fail_timeout=5s;\\n' "$ip" "$UPSTREAM_PORT"
    done)
    [ -n "$servers" ] || servers='        server 127.0.0.1:1 down;\n'
    list=$(for ip in $1; do printf '%s:%s ' "$ip" "$UPSTREAM_PORT"; done)
    sed -e "s|@DAEMON@|off|" -e "s|@TMP@|/tmp|g" \
        -e "s|@ERROR_LOG@|/dev/stderr|" -e "s|@ACCESS_LOG@|$access_log|" \
        -e "s|@USER_DIRECTIVE@||" -e "s|@LISTEN@|$LISTEN_PORT|" \
        -e "s|@UPSTREAM_SERVERS@|$servers|" -e "s|@UPSTREAM_LIST@|${list% }|" "$TEMPLATE" > "$CONF.new"
    mv "$CONF.new" "$CONF"
}

current=$(addresses)
render "$current"
nginx -c "$CONF" -p /tmp &
nginx_pid=$!
trap 'kill -QUIT "$nginx_pid" 2>/dev/null; wait "$nginx_pid"; exit 0' TERM INT QUIT

while kill -0 "$nginx_pid" 2>/dev/null; do
    sleep "$RESOLVE_INTERVAL" &
    wait $! || true
    latest=$(addresses)
    if [ -n "$latest" ] && [ "$latest" != "$current" ]; then
        render "$latest"
        if nginx -t -q -c "$CONF" -p /tmp; then
            kill -HUP "$nginx_pid"
            current=$latest
            echo "hscale-nginx: upstream is now $(echo $latest | tr '\n' ' ')" >&2
        fi
    fi
done
wait "$nginx_pid"
