#!/usr/bin/env bash
# Set up with the test extras, then run the whole suite (real data from ../shared when present).
# With no arguments the suite runs in three pytest processes: the deployment runtimes (ONNX Runtime,
# OpenVINO) and Ray each bring native thread pools and signal handlers, and after the rest of the suite
# in one interpreter the mix once crashed it (segfault, no Python frame). Arguments run one pytest as given.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
. .venv/bin/activate
if [ "$#" -gt 0 ]; then
  exec python -m pytest -q "$@"
fi
python -m pytest -q --ignore-glob='tests/test_deploy*.py' --ignore-glob='tests/test_cluster*.py'
python -m pytest -q tests/test_deploy*.py
python -m pytest -q tests/test_cluster*.py
