#!/usr/bin/env bash
# Runs every fuzz target of the root module (each `func FuzzX(f *testing.F)` in a _test.go
# file) for FUZZTIME each (default 8s; 0 runs none), one after the other: `go test -fuzz`
# takes one package and one target. It prints `go test -json` on stdout, each run's
# package named "<import path> [fuzz <target>]" so that the report tells the runs apart
# from the package's plain test run (which already ran each target's checked-in corpus,
# testdata/fuzz/<target>/, and its f.Add seeds).
#
# A target that finds a failing input fails the run: go test writes the input to the
# package's testdata/fuzz/<target>/, and this script prints it too (CI's clone is thrown
# away). Fix the code, and commit the input with the fix: it stays in the corpus as a
# regression test. Exit status: 0, or the first failing run's.
#
#   FUZZTIME=1m deploy/scripts/gofuzz.sh     # longer runs, by hand
#   FUZZ_PARALLEL=4                          # fuzzing workers per target (default: go's, GOMAXPROCS)
#   FUZZ_MATCH='^FuzzServeBulk$'             # only the targets whose name matches (grep -E)
set -uo pipefail
cd "$(dirname "$0")/../.."
fuzztime="${FUZZTIME:-8s}"
[ "$fuzztime" = 0 ] && exit 0
parallel=()
[ -n "${FUZZ_PARALLEL:-}" ] && parallel=(-parallel "$FUZZ_PARALLEL")

status=0
while read -r dir pkg; do
  for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$dir"/*_test.go 2>/dev/null | sort -u); do
    [[ "$target" =~ ${FUZZ_MATCH:-.} ]] || continue
    corpus="$dir/testdata/fuzz/$target"
    before=$(ls "$corpus" 2>/dev/null)
    # The package's label in the report; sed's pattern is the import path, whose only
    # special character, '.', matches itself too.
    # Go's fuzzer sometimes fails a run at its -fuzztime with "context deadline exceeded"
    # and no failing input (the coordinator's deadline racing a worker): that says nothing
    # about the code, so such a run is tried again, twice at most; only the last try is
    # reported. A run that wrote a failing input is never tried again.
    out=$(mktemp)
    for try in 1 2 3; do
      go test -json -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "${parallel[@]}" -timeout 10m "$pkg" >"$out" 2>&1
      st=$?
      [ "$st" -ne 0 ] && [ "$try" -lt 3 ] && [ "$(ls "$corpus" 2>/dev/null)" = "$before" ] &&
        grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out" || break
      echo "fuzz: $target stopped with Go's 'context deadline exceeded' and no failing input; trying again" >&2
    done
    sed "s|\"Package\":\"$pkg\"|\"Package\":\"$pkg [fuzz $target]\"|" "$out"
    rm -f "$out"
    if [ "$st" -ne 0 ]; then
      [ "$status" -ne 0 ] || status=$st
      for f in $(comm -13 <(echo "$before") <(ls "$corpus" 2>/dev/null)); do
        echo "fuzz: $target found a failing input, written to $corpus/$f:"
        sed 's/^/    /' "$corpus/$f"
      done
    fi
  done
done < <(go list -f '{{.Dir}} {{.ImportPath}}' ./...)
exit "$status"
