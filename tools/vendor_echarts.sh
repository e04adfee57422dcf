#!/bin/bash
# Fetch Apache ECharts from the npm registry at the pinned version, check the tarball against the
# registry's sha512, and copy the browser build with its licence files into backend/office/vendor/.
# The copy is committed (the back office works offline and the tests need no network); run this
# only to move to another version, then change the <script> path in backend/office/index.html.
set -euo pipefail
version=${1:-6.1.0}
integrity_6_1_0="sha512-q0yaFPggC9FUdsWH4blavRWFmxdrIodbkoKNAjJudAI6CA9gNPxHtV2RcZNEepZVlk4yvBYkOkbk6HIVpIyHZA=="
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "echarts@$version" >/dev/null
expected=$(npm view "echarts@$version" dist.integrity)
if [ "$version" = 6.1.0 ] && [ "$expected" != "$integrity_6_1_0" ]; then
    echo "the registry's integrity for echarts 6.1.0 changed: $expected" >&2; exit 1
fi
actual="sha512-$(openssl dgst -sha512 -binary "echarts-$version.tgz" | base64 -w0)"
[ "$actual" = "$expected" ] || { echo "echarts-$version.tgz: $actual, expected $expected" >&2; exit 1; }
tar xzf "echarts-$version.tgz"
out="$repo/backend/office/vendor/echarts-$version"
mkdir -p "$out"
cp package/dist/echarts.min.js package/LICENSE package/NOTICE package/licenses/LICENSE-d3 "$out/"
sha256sum "$out/echarts.min.js"
