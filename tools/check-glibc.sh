#!/usr/bin/env bash
# Fails unless BINARY needs at most glibc MAX (the highest GLIBC_x.y symbol
# version it references), e.g. tools/check-glibc.sh fer-edge 2.31.
# readelf reads any architecture's ELF, so this checks cross builds too.
set -euo pipefail
bin=$1 max=$2
need=$(readelf --dyn-syms --wide "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
if [ -z "$need" ]; then
  echo "check-glibc: $bin references no GLIBC_ symbol versions (not a dynamic glibc binary?)" >&2
  exit 1
fi
if [ "$(printf '%s\n%s\n' "$need" "$max" | sort -V | tail -n 1)" != "$max" ]; then
  echo "check-glibc: $bin needs GLIBC_$need, above the $max floor (JetPack 5 has 2.31)" >&2
  exit 1
fi
echo "check-glibc: $bin needs at most GLIBC_$need (floor $max): ok" >&2
