#!/usr/bin/env bash
# Regenerate every CPU report under reports/ from fresh measured runs (GPU reports: benchmarks/gpu_session.sh).
# Exit codes of the individual commands are expected to be 1 where a report finds differences.
set -u
cd "$(dirname "$0")/.."
# Recorded runs inherit this; run.json keeps it and each report's Reproduce block sets it again.
export OMP_NUM_THREADS=1
run() { echo "+ $*" >&2; "$@"; echo "  exit $?" >&2; }
mkdir -p reports/toy reports/clip-dora
# seed 000: histocc vs occpast
run parity report --pair histocc-occpast --attribute -o reports/histocc-vs-occpast.md
for p in histocc-occpast-nowarmup histocc-occpast-amp histocc-occpast-ddp; do run parity report --pair $p -o reports/$p.md; done
# seed 001: neural_seq_decoder
run parity report --pair nsd-reference-vs-mod-upstream -o reports/nsd-reference-vs-mod-upstream.md
run parity report --pair nsd-baseline-vs-run11 --attribute --jobs 2 -o reports/nsd-baseline-vs-run11.md
run parity ablate --pair nsd-baseline-vs-run11 --jobs 2 --format json -o reports/nsd-ablation.json
run parity ablate --pair nsd-baseline-vs-run11 --jobs 2 -o reports/nsd-ablation.md
run python -m implementations.neural_seq_decoder_mod.questions --run runs/nsd-baseline-vs-run11/ablate/baseline \
  --ablation reports/nsd-ablation.json -o reports/nsd-questions.md
# seed 003: CLIP + DoRA checkpoint resume
for side in reference complete; do
  run parity resume-check --pair clip-dora-$side --controls --format json -o reports/clip-dora/resume-$side.json
  run parity resume-check --pair clip-dora-$side --controls -o reports/clip-dora/resume-$side.md
  run parity audit runs/clip-dora-$side/resume/split-2/ckpt/ckpt_epoch2.pt --trace runs/clip-dora-$side/resume/stop-2 \
    --impact reports/clip-dora/resume-$side.json -o reports/clip-dora/audit-$side.md
done
run parity audit runs/clip-dora-reference/resume/split-2/ckpt/ckpt_epoch2.pt \
  --against runs/clip-dora-complete/resume/split-2/ckpt/ckpt_epoch2.pt -o reports/clip-dora/audit-reference-vs-complete.md
# the toy family (tests/toy)
for f in parity/pairs/toy-*.toml; do
  p=$(basename "$f" .toml)
  case $p in
    toy-resume) run parity resume-check --pair $p --controls -o reports/toy/$p.md ;;
    toy-ablate) run parity ablate --pair $p -o reports/toy/$p.md ;;
    *) run parity report --pair $p -o reports/toy/$p.md ;;
  esac
done
# the fork family (tests/forks): a trainer written like a real project and ten one-change forks
mkdir -p reports/forks
for f in parity/pairs/fork-*.toml; do
  p=$(basename "$f" .toml)
  run parity report --pair $p -o reports/forks/$p.md
done
# seed 004: HF Trainer SFT, the seed's BEFORE vs AFTER TrainingArguments, and each changed argument alone
run parity report --pair hf-trainer-before-vs-after -o reports/hf-trainer-before-vs-after.md
run parity ablate --pair hf-trainer-before-vs-after --jobs 2 -o reports/hf-trainer-ablation.md
# the seed's claims one by one, from the report, the ablation (cached runs of the line above) and the speed benchmark
mkdir -p runs/claims
run parity report --pair hf-trainer-before-vs-after --format json -o runs/claims/report.json
run parity ablate --pair hf-trainer-before-vs-after --jobs 2 --format json -o runs/claims/ablation.json
run python benchmarks/hf_sft_speed.py --model_size tiny --scale 4 --steps 4 --skip 1 --n 400 --device cpu --json runs/claims/speed.json
run python -m implementations.hf_sft_optimized.claims --report runs/claims/report.json --ablation runs/claims/ablation.json \
  --speed runs/claims/speed.json -o reports/hf-trainer-claims.md
# the framework test beds (tests/frameworks): HF Trainer, accelerate, TRL, Lightning
mkdir -p reports/frameworks
for f in parity/pairs/fw-*.toml; do
  p=$(basename "$f" .toml)
  case $p in
    fw-hf-resume) run parity resume-check --pair $p -o reports/frameworks/$p.md ;;
    *) run parity report --pair $p -o reports/frameworks/$p.md ;;
  esac
done
# seed 002: the two LM trainers, feature matrix measured by `parity features` (with the same-token-stream pair's
# numerics and the CPU throughput benchmark); own runs dir, so that it never races a `parity report` of the same pairs
run python benchmarks/lm_throughput.py --json reports/lm-sample-vs-chunked-throughput.json
run parity features --pair lm-sample-vs-chunked --same-stream-pair lm-sample-packed-vs-chunked --runs-dir runs/features \
  --throughput reports/lm-sample-vs-chunked-throughput.json -o reports/lm-sample-vs-chunked.md
# parity features on a framework loop this project did not write the training of (HF Trainer: checkpoint folders,
# trainer_state.json, safetensors)
run parity features --pair fw-hf-logging --runs-dir runs/features -o reports/frameworks/fw-hf-logging-features.md
