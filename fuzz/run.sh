#!/usr/bin/env bash
# fuzz/run.sh TARGET [SECONDS]: publishes fuzz/KvDb.Fuzz, instruments the KvDb assemblies with SharpFuzz, runs
# AFL++ on one target from fuzz/corpus/TARGET for SECONDS (default 600), then prints executions, exec/s and the
# crashes it saved. Needs `afl-fuzz` (Debian: apt-get install afl++) and `sharpfuzz`
# (dotnet tool install --global SharpFuzz.CommandLine --version 2.3.0). Findings stay in $FUZZ_OUT (default
# /tmp/kvdb-fuzz/TARGET); a crash reproduces with: KvDb.Fuzz TARGET CRASH_FILE.
set -euo pipefail
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${FUZZ_OUT:-/tmp/kvdb-fuzz}
work=$out/$target
export PATH="$PATH:$HOME/.dotnet/tools"
command -v afl-fuzz >/dev/null || { echo "afl-fuzz not found: apt-get install -y afl++" >&2; exit 2; }
command -v sharpfuzz >/dev/null || { echo "sharpfuzz not found: dotnet tool install --global SharpFuzz.CommandLine --version 2.3.0" >&2; exit 2; }
[ -d "$root/fuzz/corpus/$target" ] || { echo "no corpus for target '$target' in fuzz/corpus" >&2; exit 2; }

# sharpfuzz instruments in place and must not instrument twice: each run instruments a fresh copy of the publish.
rm -rf "$work"
mkdir -p "$work"
dotnet publish "$root/fuzz/KvDb.Fuzz" -c Release -o "$out/publish" --nologo -v quiet >/dev/null
cp -r "$out/publish" "$work/bin"
# Coverage of our own decoders only: third-party code (protobuf, FASTER) is not what is under test.
for assembly in KvDb.Core KvDb.Protocol KvDb.Store KvDb.Index; do
  sharpfuzz "$work/bin/$assembly.dll" >/dev/null
done

# The .NET runtime is not an AFL-instrumented binary (SKIP_BIN_CHECK); SharpFuzz reports coverage itself.
AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
  afl-fuzz -V "$seconds" -t 5000 -m none -i "$root/fuzz/corpus/$target" -o "$work/findings" \
  -- "$work/bin/KvDb.Fuzz" "$target" >"$work/afl.log" 2>&1 || { tail -30 "$work/afl.log" >&2; exit 1; }

stats=$work/findings/default/fuzzer_stats
field() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
echo "target=$target run_time_s=$(field run_time) execs=$(field execs_done) execs_per_sec=$(field execs_per_sec) corpus=$(field corpus_count) crashes=$(field saved_crashes) hangs=$(field saved_hangs) edges=$(field edges_found)"
find "$work/findings/default/crashes" -name 'id:*' -print 2>/dev/null || true
