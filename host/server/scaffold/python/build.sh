#!/bin/sh
# Builds {{crate}}.wasm (needs `pip install -r requirements.txt`).
set -eu
cd "$(dirname "$0")"
componentize-py -d wit -w {{world}} componentize app -o {{crate}}.wasm
echo "built {{crate}}.wasm"
