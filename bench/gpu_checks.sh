#!/usr/bin/env bash
# Every GPU check of stage 1 in one run (not yet timed on a GPU; run it in parts if short):
#   1. throughput: the paper's DataLoader path vs the fast path (batch 64, CUDA graphs,
#      batch 512, batch 512 compiled), ResNet-34 on CIFAR-100-LT-shaped data;
#   2. accuracy parity on Fashion-MNIST-LT at CIFAR-100-LT size (12,406 images, IR 100):
#      reference vs fast path at batch 64 vs fast path at batch 512, 2 seeds each;
#   3. feature extraction and batched stage-2 re-training on the GPU;
#   4. imagenet: ImageNet-shaped JPEGs, ResNet-50 at 224: stage-1 images/s of the reference
#      path vs the fast path (CPU decoding, GPU decoding, packed file), extraction images/s;
#   5. scale: all methods x 3 seeds at ImageNet-LT and iNaturalist 2018 size (time, memory).
# Needs torch with CUDA, numpy, h5py, pyyaml, torchvision and tqdm (pure Python: put its
# package directory on PYTHONPATH if the machine lacks it), and the four Fashion-MNIST
# idx files in data/raw/ (or /usr/share/datasets/fashion-mnist). No dvc needed.
#
#   bash bench/gpu_checks.sh [throughput] [parity] [stage2] [imagenet] [scale]   # default: all
#   PARITY_EPOCHS=2 bash bench/gpu_checks.sh parity              # a quick smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
checks=("$@")
[ ${#checks[@]} -eq 0 ] && checks=(throughput parity stage2 imagenet scale)
nvidia-smi -L || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

for check in "${checks[@]}"; do
  case "$check" in
    throughput)
      python bench/stage1.py --arch resnet34 --images 10847 --epochs 4 --workers 8 \
        --fast 64 64:graphs 512 512:compile 2>&1 | tee "$OUT/stage1_throughput.txt" ;;
    parity)
      OUT="$OUT" python - <<'EOF'
import os, yaml
p = yaml.safe_load(open("params.yaml"))
p["data"].update(max_per_class=5000)  # 12,406 training images, like CIFAR-100-LT's 10,847
yaml.safe_dump(p, open(os.path.join(os.environ["OUT"], "parity_params.yaml"), "w"),
               sort_keys=False)
EOF
      python stages/prepare_data.py --params "$OUT/parity_params.yaml" --out "$OUT/parity.h5"
      python bench/stage1_parity.py --params "$OUT/parity_params.yaml" --data "$OUT/parity.h5" \
        --epochs "${PARITY_EPOCHS:-30}" --seeds 0 1 --large-batch 512 --warmup 2 2>&1 | tee "$OUT/stage1_parity.txt" ;;
    stage2)
      python bench/features.py --arch resnet34 2>&1 | tee "$OUT/features.txt"
      python bench/retrain.py --device cuda --dim 512 2>&1 | tee "$OUT/retrain.txt" ;;
    imagenet)
      python bench/imagenet_shape.py --images "${IMAGENET_IMAGES:-4096}" --batch 256 --workers 16 \
        2>&1 | tee "$OUT/imagenet_shape.txt" ;;
    scale)
      python bench/retrain.py --device cuda --preset imagenet_lt 2>&1 | tee "$OUT/scale_imagenet_lt.txt"
      python bench/retrain.py --device cuda --preset inat2018 --feature-dtype bfloat16 2>&1 \
        | tee "$OUT/scale_inat2018.txt" ;;
    *) echo "unknown check '$check': throughput, parity, stage2, imagenet or scale" >&2; exit 2 ;;
  esac
done
