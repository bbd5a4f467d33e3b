#!/usr/bin/env bash
# Builds the Python and JavaScript plugins (plugins/examples/*-py, *-js and
# plugins/fixtures/*-py) from the same WIT as the Rust ones, into
# target/guest-plugins/. Needs componentize-py (PyPI, pinned in each
# requirements.txt) and Node.js; installs componentize-js (npm, pinned in
# each package.json) into the example's node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/guest-plugins
mkdir -p "$OUT"
WIT="$(pwd)/wit/0.1.0"

for dir in plugins/examples/*-py plugins/fixtures/*-py; do
    [ -f "$dir/app.py" ] || continue
    world=$(sed -n 's/^# world: *//p' "$dir/app.py" | head -1)
    name=$(basename "$dir" | tr - _)
    echo "componentize-py: $dir ($world)"
    (cd "$dir" && componentize-py -d "$WIT" -w "$world" componentize app -o "$OLDPWD/$OUT/$name.wasm") >/dev/null
done

for dir in plugins/examples/*-js; do
    [ -f "$dir/package.json" ] || continue
    name=$(basename "$dir" | tr - _)
    echo "componentize-js: $dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund >/dev/null && npm run --silent build)
    mv "$dir"/*.wasm "$OUT/$name.wasm"
done
ls -la "$OUT"
