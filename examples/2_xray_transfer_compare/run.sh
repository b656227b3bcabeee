#!/usr/bin/env bash
# Recipe 2: four backbones on the same patient split, evaluated on the same held-out test images,
# then a paired comparison. Run from the repository root. Extra arguments are passed to every
# `medclass train` (e.g. --set data.limit_per_class=200 --set model.image_size=64 for a CPU run).
set -euo pipefail
M=.venv/bin/medclass
D=examples/2_xray_transfer_compare
for run in resnet50 densenet121 lite0_frozen lite0_finetune; do
  $M train "$D/$run.yaml" --quiet "$@"
  $M evaluate "workspace/recipes/2_$run"
done
$M compare workspace/recipes/2_resnet50 workspace/recipes/2_densenet121 \
  workspace/recipes/2_lite0_frozen workspace/recipes/2_lite0_finetune
