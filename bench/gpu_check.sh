#!/usr/bin/env bash
# One prepared GPU check: CUDA + AMP, the compact and the ResNet-18 backbone, one and two GPUs
# (when there are two), ResNet-18 fine-tuned from ImageNet weights (when present), LDLVA overhead. Prints images/s and seconds per epoch with the card's
# name; everything it writes goes under ${OUT:-/tmp/uldl-gpu}. Usage: bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/uldl-gpu}
mkdir -p "$OUT"
export ULDL_STUDIO_CACHE="$OUT/cache" PYTHONWARNINGS=ignore
PY=${PY:-.venv/bin/python}
FERPLUS=../shared/data/ferplus
DATA=demo; FMT=(); [ -f "$FERPLUS/FER2013Train/label.csv" ] && DATA=$FERPLUS && FMT=(--format ferplus)
$PY - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    print(" ", i, torch.cuda.get_device_name(i), f"{torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB")
PY
epoch_report() {  # run dir, label
  $PY - "$1" "$2" <<'PY'
import sys, pandas as pd
h = pd.read_csv(f"{sys.argv[1]}/history.csv"); s = pd.read_csv(f"{sys.argv[1]}/samples.csv", usecols=["split"])
n = int((s["split"] == "train").sum()); last = h.iloc[-1]
print(f"{sys.argv[2]}: {n} train images, {last['seconds']:.1f} s/epoch (batches), {n / last['seconds']:.0f} img/s, "
      f"test accuracy {last['test_accuracy']:.3f}")
PY
}
$PY -m uldl_studio train "$DATA" "${FMT[@]}" --device cuda --epochs 8 --out "$OUT/compact" > "$OUT/compact.log" 2>&1
epoch_report "$OUT/compact" "ldlva compact 48 px"
$PY -m uldl_studio train "$DATA" "${FMT[@]}" --device cuda --epochs 3 --set arch=resnet18 --set image_size=112 \
    --set channels=3 --set batch_size=256 --out "$OUT/resnet18" > "$OUT/resnet18.log" 2>&1
epoch_report "$OUT/resnet18" "ldlva resnet18 112 px RGB"
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  $PY -m torch.distributed.run --standalone --nproc_per_node 2 -m uldl_studio train "$DATA" "${FMT[@]}" \
      --device cuda --epochs 3 --set arch=resnet18 --set image_size=112 --set channels=3 --set batch_size=256 \
      --out "$OUT/resnet18-ddp" > "$OUT/resnet18-ddp.log" 2>&1
  epoch_report "$OUT/resnet18-ddp" "ldlva resnet18 112 px RGB, 2 GPUs (NCCL)"
fi
# ResNet-18 from torchvision's ImageNet weights (fine-tuning: backbone at a tenth of the learning
# rate, balanced classes), where the weights file is present: the machine may have no internet,
# so it is looked for in torch.hub's cache (where torchvision keeps it) or at $IMAGENET18.
IMAGENET18=${IMAGENET18:-$($PY -c 'import os, torch.hub; print(os.path.join(torch.hub.get_dir(), "checkpoints", "resnet18-f37072fd.pth"))')}
if [ -f "$IMAGENET18" ]; then
  $PY -m uldl_studio train "$DATA" "${FMT[@]}" --single-label sample --method ce --device cuda --epochs 8 \
      --set arch=resnet18 --set image_size=112 --set channels=3 --set batch_size=128 --set lr=0.02 \
      --set pretrained="$IMAGENET18" --set backbone_lr_mult=0.1 --set class_balance=logit_adjust \
      --out "$OUT/resnet18-imagenet" > "$OUT/resnet18-imagenet.log" 2>&1
  epoch_report "$OUT/resnet18-imagenet" "ce resnet18 112 px RGB from ImageNet weights"
  $PY -m uldl_studio evaluate "$OUT/resnet18-imagenet" | grep -E "^test\.(reference\.)?(accuracy|mean_class_accuracy|class_accuracy)"
else
  echo "ResNet-18 from ImageNet weights: skipped, no weights at $IMAGENET18 (download resnet18-f37072fd.pth from download.pytorch.org/models there, or set IMAGENET18)"
fi
$PY bench/overhead.py --data demo --device cuda --limit 2000 --epochs 1 --repeats 2 --modes ce,bank,exact
