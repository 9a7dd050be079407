#!/usr/bin/env bash
# Rebuild workflow/plots/offline.html, the HTML page `dvc plots show/diff` fills (set in
# .dvc/config as plots.html_template), with Vega, Vega-Lite and vega-embed inlined from their
# npm packages. DVC's own page loads them from a CDN, so its plots stay blank offline; DVC
# 3.67 has no offline switch, only this template option.
#
# The versions are the ones DVC 3.67's renderer (dvc-render 1.0.2) asks the CDN for, so the
# plots render as they would online. Only the minified builds and the licenses are kept
# (workflow/plots/vendor/); the page inlines the builds, so dvc_plots/index.html is one
# self-contained file wherever `-o` puts it. Needs npm; run from anywhere:
#   workflow/plots/vendor.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
packages=(vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "${packages[@]}" >/dev/null)
mkdir -p "$here/vendor"
for package in "${packages[@]}"; do
    name="${package%@*}"
    mkdir -p "$work/$name"
    tar xzf "$work/$name-${package#*@}.tgz" -C "$work/$name"
    cp "$work/$name/package/build/$name.min.js" "$here/vendor/$name.min.js"
    cp "$work/$name/package/LICENSE" "$here/vendor/LICENSE-$name"
done
{
    cat <<'HTML'
<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>lossbench: DVC plots</title>
    <!-- Vega 5.20.2, Vega-Lite 5.2.0 and vega-embed 6.18.2, inlined from their npm packages
         (BSD-3-Clause, licenses in workflow/plots/vendor/) so that this page works offline.
         Rebuilt by workflow/plots/vendor.sh. -->
HTML
    for package in "${packages[@]}"; do
        name="${package%@*}"
        printf '    <script type="text/javascript">\n'
        cat "$here/vendor/$name.min.js"
        printf '\n    </script>\n'
    done
    cat <<'HTML'
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
        /* A PNG figure (DVC's image boxes, the only divs styled nowrap): the revisions of one
           figure share the window's width side by side, each shrunk to fit, never enlarged. */
        div[style*="nowrap"] { display: flex; flex-wrap: wrap; justify-content: center; }
        div[style*="nowrap"] > p { flex-basis: 100%; }
        div[style*="nowrap"] > div { flex: 0 1 auto; min-width: 0; }
        div[style*="nowrap"] img { max-width: 100%; height: auto; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
HTML
} > "$here/offline.html"
# The minified builds live inside offline.html; the copies are not kept twice.
rm -f "$here"/vendor/*.min.js
echo "wrote $here/offline.html"
