#!/usr/bin/env bash
# Recipe 9 in one command (from the repository root): manifest, train, evaluate. Extra arguments go to `train`
# (e.g. --set model.image_size=64 --set train.epochs=3 for the tiny CPU run in README.md).
set -euo pipefail
.venv/bin/python examples/9_fundus_multilabel/make_manifest.py
.venv/bin/medclass train examples/9_fundus_multilabel/config.yaml "$@"
.venv/bin/medclass evaluate workspace/recipes/9_fundus_multilabel
