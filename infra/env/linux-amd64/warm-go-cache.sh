#!/bin/sh
# Fills the steps' Go build cache ($HOME/.cache/go-build, HOME=/work/home as the agent gives steps) with the
# standard library as this image's Go configuration (GOARCH, CGO_ENABLED, GOFLAGS) compiles it, vets it and links
# tests against it: a module that imports all of std, built, vetted and tested once, here. So a step compiles and
# vets only its own packages. Every worker starts from this layer and nothing it writes outlives it. Run as the
# builder user, once per configuration: linux-386 and linux-amd64-race run it again under their settings.
set -eu
dir=$(mktemp -d)
cd "$dir"
printf 'module hermetic.invalid/warm\n\ngo 1.18\n' > go.mod
{
  echo 'package warm'
  echo
  echo 'import ('
  # Every importable std package that builds in this configuration (not internal, vendored or a command).
  go list -e -f '{{if not .Error}}{{.ImportPath}}{{end}}' std \
    | grep -v -E '(^|/)(internal|vendor)(/|$)|^(cmd/|unsafe$|builtin$)' \
    | sed 's/.*/\t_ "&"/'
  echo ')'
} > warm.go
printf 'package warm\n\nimport "testing"\n\nfunc TestWarm(t *testing.T) {}\n' > warm_test.go
GOPROXY=off go vet ./...
GOPROXY=off go build ./...
GOPROXY=off go test ./...
cd /
rm -rf "$dir"
# go marks an entry it uses by setting its mtime, once that is over an hour old; in a container each such touch
# copies the whole file up out of this layer (hundreds of files, a few hundred ms a task). Entries dated in the
# future are never touched again, nor trimmed.
find "$HOME/.cache/go-build" -type f ! -name trim.txt -exec touch -d '2100-01-01 00:00:00' {} +
echo "warm-go-cache: $(du -sh "$HOME/.cache/go-build" | cut -f1) in the build cache"
