#!/usr/bin/env bash
# Builds gr_semcom's compiled GNU Radio blocks (gr_semcom/blocks/native/semcom_native.cc:
# the receiver's NaN guard and burst capture) into gr_semcom/blocks/_native*.so, against
# Debian's GNU Radio 3.10 runtime and pybind11 (gnuradio-dev, pybind11-dev). Run by
# scripts/setup.sh; rebuilds only when the source is newer than the module. ~30 s on the
# 2-core box. Without the module the receivers use the Python blocks (the tested reference).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=gr_semcom/blocks/native/semcom_native.cc
EXT=$(/usr/bin/python3 -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
OUT=gr_semcom/blocks/_native$EXT
if [ -f "$OUT" ] && [ "$OUT" -nt "$SRC" ] && [ "${1:-}" != "--force" ]; then
  exit 0
fi
PYINC=$(/usr/bin/python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
echo "build_native: compiling $SRC (C++, about 30 s, once)" >&2
TMP="$OUT.tmp.$$"
g++ -O3 -shared -fPIC -std=c++17 -Wall -I"$PYINC" $(pkg-config --cflags gnuradio-runtime) "$SRC" -o "$TMP" \
  $(pkg-config --libs gnuradio-runtime)
mv "$TMP" "$OUT"
/usr/bin/python3 -c "import sys; sys.path.insert(0, '.'); from gr_semcom.blocks import _native; _native.nan_guard_cc(); print('build_native: ok', _native.__file__)" >&2
