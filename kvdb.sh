#!/usr/bin/env bash
# KvDb's two entry points on a fresh Debian machine with the .NET 10 SDK:
#   ./kvdb.sh demo   — build, start the server on its embedded defaults, load a demo context, answer attention queries
#   ./kvdb.sh test   — build everything (native parts included), run every test project and the Python client's pytest
#                      tests (clients/python/test.sh); prints "N passed, N failed"
#   ./kvdb.sh image  — build the container image kvdb:latest (deploy/image.sh; installs and starts Docker when needed)
# Anything else is passed to the kvdb CLI (e.g. ./kvdb.sh serve --port 50051).
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

ensure_native() {
  # Optional native parts (Faiss shim). Each script installs its own apt packages; failures leave the managed build usable.
  for script in src/*/native/build.sh; do
    [ -e "$script" ] || continue
    bash "$script" || echo "kvdb.sh: $script failed; tests that need it will be skipped" >&2
  done
}

ensure_browser() {
  # The dashboard's browser tests drive Debian's headless Chromium through chromedriver (no browser downloads).
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null \
        || echo "kvdb.sh: could not install chromium/chromium-driver; the dashboard's browser tests will be skipped" >&2
    else
      echo "kvdb.sh: chromium and chromium-driver are missing (install them as root); the dashboard's browser tests will be skipped" >&2
    fi
  fi
}

ensure_container_image() {
  # The container tests (tests/KvDb.ContainerTests) run the image under Docker. Build it here, once, after the solution
  # (the publish then compiles only the CLI); the base and the image are cached by content hash, so an unchanged tree
  # costs seconds. In CI an unreachable Docker fails those tests instead of skipping them.
  export TESTCONTAINERS_RYUK_DISABLED=true
  if [ "${CI:-}" = "true" ]; then export KVDB_REQUIRE_DOCKER=1; fi
  local start=$SECONDS image
  if image=$(bash deploy/image.sh --no-latest); then
    echo "kvdb.sh: container image $image ready in $((SECONDS - start)) s" >&2
    export KVDB_TEST_IMAGE="$image"
  else
    echo "kvdb.sh: no container image (Docker unavailable or the build failed); the container tests will say why" >&2
  fi
}

run_tests() {
  ensure_native
  ensure_browser
  rm -rf TestResults
  dotnet restore KvDb.sln
  dotnet build KvDb.sln -c Release --no-restore
  ensure_container_image
  set +e
  dotnet test KvDb.sln -c Release --no-build --logger trx --results-directory TestResults "$@"
  local rc=$?
  # The kernels and the core dtype conversion again with AVX-512 switched off, so the Vector256 (AVX2) paths are tested too.
  DOTNET_EnableAVX512=0 dotnet test tests/KvDb.Kernels.Tests -c Release --no-build --logger trx --results-directory TestResults/avx2 "$@"
  local rc2=$?
  [ "$rc" -ne 0 ] || rc=$rc2
  DOTNET_EnableAVX512=0 dotnet test tests/KvDb.Core.Tests -c Release --no-build --logger trx --results-directory TestResults/avx2-core "$@"
  rc2=$?
  [ "$rc" -ne 0 ] || rc=$rc2
  # The Python client (clients/python) installed with pip and tested with pytest against the server just built.
  mkdir -p TestResults/python
  bash clients/python/test.sh --junitxml "$PWD/TestResults/python/pytest.xml"
  rc2=$?
  [ "$rc" -ne 0 ] || rc=$rc2
  set -e
  local passed=0 failed=0 files=0
  for trx in TestResults/*.trx TestResults/*/*.trx; do
    [ -e "$trx" ] || continue
    files=$((files + 1))
    local counters
    counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
    passed=$((passed + $(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")))
    failed=$((failed + $(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")))
  done
  # pytest's JUnit XML: tests, failures, errors and skipped of the first <testsuite>; no file at all counts as a failure.
  local junit=TestResults/python/pytest.xml
  if [ -s "$junit" ]; then
    local suite tests failures errors skipped
    suite=$(grep -o '<testsuite [^>]*>' "$junit" | head -1)
    tests=$(sed -n 's/.* tests="\([0-9]*\)".*/\1/p' <<<"$suite")
    failures=$(sed -n 's/.* failures="\([0-9]*\)".*/\1/p' <<<"$suite")
    errors=$(sed -n 's/.* errors="\([0-9]*\)".*/\1/p' <<<"$suite")
    skipped=$(sed -n 's/.* skipped="\([0-9]*\)".*/\1/p' <<<"$suite")
    passed=$((passed + ${tests:-0} - ${failures:-0} - ${errors:-0} - ${skipped:-0}))
    failed=$((failed + ${failures:-0} + ${errors:-0}))
  else
    failed=$((failed + 1))
  fi
  if [ "$failed" -ne 0 ]; then
    # Name the failures last, next to the summary: a CI log is often read only by its tail.
    echo "failed tests:"
    grep -ho '<UnitTestResult [^>]*outcome="Failed"[^>]*>' TestResults/*.trx TestResults/*/*.trx 2>/dev/null \
      | sed -n 's/.* testName="\([^"]*\)".*/  \1/p' | head -40
    if [ -s "$junit" ]; then
      grep -o '<testcase [^>]*>[[:space:]]*<\(failure\|error\)' "$junit" | sed -n 's/.* name="\([^"]*\)".*/  python: \1/p' | head -20
    fi
  fi
  echo "$passed passed, $failed failed"
  if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
    exit 1
  fi
}

case "${1:-demo}" in
  test)
    shift || true
    run_tests "$@"
    ;;
  image)
    shift || true
    bash deploy/image.sh "$@"
    ;;
  demo)
    shift || true
    dotnet run -c Release --project src/Cli -- demo "$@"
    ;;
  *)
    dotnet run -c Release --project src/Cli -- "$@"
    ;;
esac
