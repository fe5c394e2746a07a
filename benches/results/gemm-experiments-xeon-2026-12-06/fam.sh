#!/bin/bash
export XDG_RUNTIME_DIR=/tmp/xdg
cd /work/main
${BIN:-./target/release/combicam-gpu} bench --quick --slowest 500 2>&1 | tee /tmp/fam.last | sed -n '/slowest/,$p' | awk 'NR>1 {lab=$NF; kind=$3; if (lab ~ /pack$/) kind="pack"; else if ($3=="gemm" && lab ~ /bwd/) kind="gemm-bwd"; else if ($3=="gemm") kind="gemm-fwd"; else if ($3=="depthwise" && lab ~ /bwd/) kind="dw-bwd"; s[kind]+=$1; t+=$1} END {for (k in s) printf "%s %.0f  ", k, s[k]; printf "total %.0f\n", t}'
grep "explain" /tmp/fam.last | head -1 | cut -c1-60
