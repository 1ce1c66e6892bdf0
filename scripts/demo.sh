#!/usr/bin/env bash
# Set up, then upscale the built-in photograph with the default model: demo_out/comparison.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh plot
. .venv/bin/activate
superres demo -o demo_out "$@"
