#!/usr/bin/env bash
# Builds gr_semcom's two compiled modules: the LDPC decoder (gr_semcom/phy/native/ldpc_native.cc
# -> gr_semcom/phy/_ldpc_native*.so, pybind11 only) and the receiver's GNU Radio stream blocks
# (gr_semcom/blocks/native/semcom_native.cc: NaN guard, burst capture -> gr_semcom/blocks/_native*.so,
# against Debian's GNU Radio 3.10 runtime; gnuradio-dev, pybind11-dev). Run by scripts/setup.sh;
# rebuilds each only when its source is newer than the module. ~40 s on the 2-core box. Without
# them the receivers use the numba kernels and the Python blocks (the tested references).
set -euo pipefail
cd "$(dirname "$0")/.."
EXT=$(/usr/bin/python3 -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
PYINC=$(/usr/bin/python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")

# 1. the LDPC decoder (phy layer: pybind11 only, no GNU Radio). -ffast-math lets GCC
# call glibc's vectorised tanhf/logf (libmvec); it is given to the compile step only,
# because linking with it would add crtfastmath.o, which sets flush-to-zero for the
# whole process at load time. AVX2/FMA where the CPU has them (built on the machine
# that runs it), else the baseline x86-64 (or the host's own) instruction set.
SRC=gr_semcom/phy/native/ldpc_native.cc
OUT=gr_semcom/phy/_ldpc_native$EXT
if [ ! -f "$OUT" ] || [ "$SRC" -nt "$OUT" ] || [ "${1:-}" = "--force" ]; then
  ARCH=""
  if [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    ARCH="-mavx2 -mfma"
  fi
  echo "build_native: compiling $SRC (C++, about 10 s, once)" >&2
  TMP="$OUT.tmp.$$"
  g++ -c -O3 -ffast-math $ARCH -fPIC -std=c++17 -pthread -Wall -I"$PYINC" "$SRC" -o "$TMP.o"
  g++ -shared -pthread "$TMP.o" -o "$TMP" -lmvec -lm
  rm -f "$TMP.o"
  mv "$TMP" "$OUT"
  /usr/bin/python3 -c "import sys; sys.path.insert(0, '.'); from gr_semcom.phy import _ldpc_native as m; print('build_native: ok', m.__file__)" >&2
fi

# 2. the receiver's stream blocks (against GNU Radio's runtime)
SRC=gr_semcom/blocks/native/semcom_native.cc
OUT=gr_semcom/blocks/_native$EXT
if [ -f "$OUT" ] && [ "$OUT" -nt "$SRC" ] && [ "${1:-}" != "--force" ]; then
  exit 0
fi
echo "build_native: compiling $SRC (C++, about 30 s, once)" >&2
TMP="$OUT.tmp.$$"
g++ -O3 -shared -fPIC -std=c++17 -Wall -I"$PYINC" $(pkg-config --cflags gnuradio-runtime) "$SRC" -o "$TMP" \
  $(pkg-config --libs gnuradio-runtime)
mv "$TMP" "$OUT"
/usr/bin/python3 -c "import sys; sys.path.insert(0, '.'); from gr_semcom.blocks import _native; _native.nan_guard_cc(); print('build_native: ok', _native.__file__)" >&2
