#!/usr/bin/env bash
# The exact commands that produced models/seb_lam*, models/hyperprior_lam* and
# models/image_deepjscc, in order (CPU, 2 threads; about 80 minutes on the
# 2-core machine of benchmarks/README.md). Stage 1 is a short schedule whose
# weights stage 2 continues from (stage 1 was run with --out models/X and its
# outputs then moved to out/seb_stage1/X; the output path does not change the
# weights). Each model card repeats its own command and figures.
set -euo pipefail
cd "$(dirname "$0")/.."
S=".venv/bin/semcom train"
# stage 1
$S hyperprior --lam 128 --steps 2500 --out out/seb_stage1/hyperprior_lam128
$S hyperprior --lam 32 --steps 600 --init out/seb_stage1/hyperprior_lam128/model.safetensors --out out/seb_stage1/hyperprior_lam32
$S hyperprior --lam 512 --steps 600 --init out/seb_stage1/hyperprior_lam128/model.safetensors --out out/seb_stage1/hyperprior_lam512
$S seb --lam 128 --steps 1200 --init out/seb_stage1/hyperprior_lam128/model.safetensors --out out/seb_stage1/seb_lam128
$S seb --lam 32 --steps 400 --init out/seb_stage1/seb_lam128/model.safetensors --out out/seb_stage1/seb_lam32
$S seb --lam 512 --steps 400 --init out/seb_stage1/seb_lam128/model.safetensors --out out/seb_stage1/seb_lam512
$S image-jscc --steps 2000 --batch 16 --out models/image_deepjscc
# stage 2 (the shipped Seb and hyperprior models)
$S hyperprior --lam 128 --steps 5000 --lr 5e-4 --init out/seb_stage1/hyperprior_lam128/model.safetensors --out models/hyperprior_lam128
$S hyperprior --lam 32 --steps 1000 --lr 5e-4 --init models/hyperprior_lam128/model.safetensors --out models/hyperprior_lam32
$S hyperprior --lam 512 --steps 1000 --lr 5e-4 --init models/hyperprior_lam128/model.safetensors --out models/hyperprior_lam512
$S seb --lam 128 --steps 2500 --lr 5e-4 --ref-weight 1 --ref-steps 1000 --init out/seb_stage1/seb_lam128/model.safetensors --out models/seb_lam128
$S seb --lam 32 --steps 800 --lr 5e-4 --init models/seb_lam128/model.safetensors --out models/seb_lam32
$S seb --lam 512 --steps 800 --lr 5e-4 --init models/seb_lam128/model.safetensors --out models/seb_lam512
