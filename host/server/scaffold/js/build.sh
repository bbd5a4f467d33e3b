#!/bin/sh
# Builds {{crate}}.wasm (needs Node.js; installs componentize-js, pinned in package.json).
set -eu
cd "$(dirname "$0")"
npm install --silent --no-audit --no-fund
npm run --silent build
echo "built {{crate}}.wasm"
