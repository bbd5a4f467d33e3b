# Sourced by the admin API checks: starts the real binary on loopback with
# an admin token and sets API (its base URL), TOKEN, SERVER_PID,
# SERVER_DIR and SERVER_LOG. The caller's EXIT trap should call
# stop_admin_server.
BIN=target/debug/callpark
[ -x "$BIN" ] || cargo build -q -p callpark-server --bin callpark

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_admin_server() {
    SERVER_DIR="$(mktemp -d)"
    SERVER_LOG="$SERVER_DIR/server.log"
    local sip admin rtp hash
    sip=$(free_port)
    admin=$(free_port)
    rtp=$(( 30000 + RANDOM % 20000 ))
    TOKEN="cpk_ci-$(date +%s%N)"
    hash=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
    cat > "$SERVER_DIR/park.toml" <<TOML
[server]
listen = ["127.0.0.1:$sip"]
drain_time = "1s"
[media]
rtp_ports = "$rtp-$((rtp + 20))"
[[range]]
name = "main"
start = "701"
end = "720"
[[group]]
name = "front-desk"
members = ["sip:parker@127.0.0.1"]
destinations = ["704", "705"]
[admin]
listen = "127.0.0.1:$admin"
[[admin.token]]
name = "ci"
role = "admin"
sha256 = "$hash"
TOML
    "$BIN" serve --config "$SERVER_DIR/park.toml" 2> "$SERVER_LOG" &
    SERVER_PID=$!
    API="http://127.0.0.1:$admin"
    for _ in $(seq 1 100); do
        curl -fs "$API/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fs "$API/healthz" >/dev/null || { cat "$SERVER_LOG"; return 1; }
    export API TOKEN
}

# Fails when the server died or panicked while it was checked.
server_survived() {
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "the server died"; tail -50 "$SERVER_LOG"; return 1
    fi
    if grep -q "panicked" "$SERVER_LOG"; then
        echo "the server panicked"; grep -B2 -A10 panicked "$SERVER_LOG" | head -60; return 1
    fi
}

stop_admin_server() {
    [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "${SERVER_DIR:-}" ] && rm -rf "$SERVER_DIR"
}
