#!/bin/bash
# usage: fam.sh [BINARY]  (default: target/release/combicam-gpu of this checkout)
# Times every dispatch of the B4 300×450 explain alone (`bench --quick --slowest 500`) and
# prints one line: the sum per kind (pack, gemm-fwd, gemm-bwd, depthwise, dw-bwd, ...) and
# the total, in ms.
cd "$(dirname "$0")/../../.." || exit 1
bin=${1:-./target/release/combicam-gpu}
"$bin" bench --quick --slowest 500 2>&1 | sed -n '/slowest/,$p' | awk 'NR>1 {lab=$NF; kind=$3; if (lab ~ /pack$/) kind="pack"; else if ($3=="gemm" && lab ~ /bwd/) kind="gemm-bwd"; else if ($3=="gemm") kind="gemm-fwd"; else if ($3=="depthwise" && lab ~ /bwd/) kind="dw-bwd"; s[kind]+=$1; t+=$1} END {for (k in s) printf "%s %.0f  ", k, s[k]; printf "total %.0f\n", t}'
