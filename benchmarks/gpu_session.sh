#!/usr/bin/env bash
# Everything parity measures on a GPU machine, in one call per phase. Results land in reports/gpu/
# (and, on the lent device machine, as reports.tgz under $OUT).
#   bash benchmarks/gpu_session.sh single   # one GPU: histocc + nsd pairs, capture overhead
#   bash benchmarks/gpu_session.sh ddp      # two GPUs: histocc DDP pair over NCCL; CLIP+DoRA resume on one of them
#   bash benchmarks/gpu_session.sh forks    # one GPU: the fork family (eager vs aot_eager, inductor, LayerNorm)
#   bash benchmarks/gpu_session.sh hf-sft   # one GPU: seed 004 (1B Llama, HF Trainer): pair report + speed benchmark
#   bash benchmarks/gpu_session.sh hf-sft-ablate  # one GPU: seed 004, each changed argument alone
#   bash benchmarks/gpu_session.sh overhead # one GPU: capture overhead, 168M and 1.1B presets, bf16
#   bash benchmarks/gpu_session.sh diagnose # one GPU: the 168M preset's overhead split (step writer, switch interval, hooks)
#   bash benchmarks/gpu_session.sh lm       # one GPU: seed 002, throughput of both LM trainers + feature matrix
#   bash benchmarks/gpu_session.sh locate   # one GPU: the op behind the histocc reference's own nondeterminism
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then  # the device machine has no network: dependencies it lacks travel as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p reports/gpu
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee reports/gpu/device.txt
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a reports/gpu/device.txt
case "${1:-single}" in
  single)
    python3 -m parity report --pair gpu-histocc-occpast --device cuda -o reports/gpu/histocc-vs-occpast.md
    python3 benchmarks/capture_overhead.py --device cuda --preset gpu --rounds 5 --steps 10 \
      --json reports/gpu/capture-overhead.json > reports/gpu/capture-overhead.md
    python3 -m parity report --pair gpu-nsd-baseline-vs-run11 --device cuda -o reports/gpu/nsd-baseline-vs-run11.md
    ;;
  forks)
    for p in compiled compiled-inductor layernorm-added; do
      python3 -m parity report --pair gpu-fork-$p --device cuda -o reports/gpu/fork-$p.md
    done
    ;;
  hf-sft)
    python3 -m parity report --pair gpu-hf-trainer-before-vs-after --device cuda -o reports/gpu/hf-trainer-before-vs-after.md
    python3 -m parity report --pair gpu-hf-trainer-before-vs-after --device cuda --format json -o reports/gpu/hf-trainer-before-vs-after.json
    python3 benchmarks/hf_sft_speed.py --model_size 1b --device cuda --steps 12 --skip 3 \
      --json reports/gpu/hf-sft-speed.json > reports/gpu/hf-sft-speed.md
    ;;
  hf-sft-ablate)
    python3 -m parity ablate --pair gpu-hf-trainer-before-vs-after --device cuda --jobs 2 --steps 6 \
      --format json -o reports/gpu/hf-trainer-ablation.json
    python3 -m parity ablate --pair gpu-hf-trainer-before-vs-after --device cuda --jobs 2 --steps 6 \
      -o reports/gpu/hf-trainer-ablation.md
    python3 -m implementations.hf_sft_optimized.claims --report reports/gpu/hf-trainer-before-vs-after.json \
      --ablation reports/gpu/hf-trainer-ablation.json --speed reports/gpu/hf-sft-speed.json --ablation-steps 6 \
      -o reports/gpu/hf-trainer-claims.md
    ;;
  overhead)
    python3 benchmarks/capture_overhead.py --device cuda --preset gpu,gpu-1b --dtype bf16 --attribute --diagnose \
      --json reports/gpu/capture-overhead.json > reports/gpu/capture-overhead.md
    ;;
  diagnose)
    python3 benchmarks/capture_overhead.py --device cuda --preset gpu --dtype bf16 --diagnose \
      --json reports/gpu/capture-overhead-diagnose.json > reports/gpu/capture-overhead-diagnose.md
    ;;
  lm)
    python3 benchmarks/lm_throughput.py --device cuda --preset full --dtype bf16 --steps 30 --skip 5 \
      --json reports/gpu/lm-sample-vs-chunked-throughput.json > reports/gpu/lm-sample-vs-chunked-throughput.md
    python3 -m parity features --pair gpu-lm-sample-vs-chunked --device cuda --steps 60 --runs-dir runs/features \
      --no-test-mode --throughput reports/gpu/lm-sample-vs-chunked-throughput.json -o reports/gpu/lm-sample-vs-chunked.md
    ;;
  locate)
    python3 -m parity locate --pair gpu-histocc-occpast --device cuda --repeat --try-settings -o reports/gpu/histocc-nondeterminism.md
    ;;
  ddp)
    python3 -m parity report --pair gpu-histocc-occpast-ddp --device cuda -o reports/gpu/histocc-vs-occpast-ddp.md
    python3 -m parity resume-check --pair gpu-clip-dora-complete --device cuda --controls -o reports/gpu/clip-dora-resume.md
    python3 -m parity report --pair gpu-nsd-baseline-vs-run11 --device cuda -o reports/gpu/nsd-baseline-vs-run11.md
    ;;
esac
if [ -n "${OUT:-}" ]; then tar czf "$OUT/reports.tgz" reports/gpu runs/*/*/output.log runs/*/*/trace-rank*.jsonl runs/*/*/run.json 2>/dev/null; fi
