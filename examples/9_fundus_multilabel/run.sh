#!/usr/bin/env bash
# Recipe 9 in one command (from the repository root): manifest, train, evaluate. Extra arguments go to `train`
# (e.g. --set data.limit_per_class=150 for the CPU run measured in README.md).
set -euo pipefail
.venv/bin/python examples/9_fundus_multilabel/make_manifest.py
.venv/bin/medclass train examples/9_fundus_multilabel/config.yaml "$@"
.venv/bin/medclass evaluate workspace/recipes/9_fundus_multilabel
