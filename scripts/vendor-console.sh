#!/usr/bin/env bash
# Fetch the web console's front-end files again from the npm registry, at the pinned versions, with
# their licences, into src/wanka/server/console/static/vendor (the console uses no CDN).
set -euo pipefail
HTMX=2.0.11
ECHARTS=5.6.0
dest="$(cd "$(dirname "$0")/.." && pwd)/src/wanka/server/console/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX" >/dev/null
tar xzf "htmx.org-$HTMX.tgz"
cp package/dist/htmx.min.js "$dest/htmx.min.js"
cp package/LICENSE "$dest/htmx.LICENSE"
npm pack --silent "echarts@$ECHARTS" >/dev/null
tar xzf "echarts-$ECHARTS.tgz" --transform 's,^package,echarts,'
# the common build (line, bar, pie; grid, legend, tooltip, dataZoom…): all the console draws, at
# two thirds of the full build, which is parsed on every cold load of a chart page
cp echarts/dist/echarts.common.min.js "$dest/echarts.common.min.js"
cp echarts/LICENSE "$dest/echarts.LICENSE"
cp echarts/NOTICE "$dest/echarts.NOTICE"
echo "htmx.org $HTMX, echarts $ECHARTS -> $dest"
