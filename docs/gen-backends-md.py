#!/usr/bin/env python3
# Writes docs/backends.md from `quark backends --json`: the backend list of
# the manual comes from the registry, not from a second list.
import json
import sys

data = json.load(open(sys.argv[1]))
out = ["Title: Backends", "", "# Backends", "",
       "The backends built with libquark, as the registry describes them", ""]
for b in data["backends"]:
    out.append("## %s %s" % (b["name"], b.get("version") or ""))
    out.append("")
    if b.get("description"):
        out.append(b["description"])
        out.append("")
    out.append("- dtypes: %s" % (", ".join("`%s`" % d for d in b["dtypes"]) or "none declared"))
    out.append("- granularities: %s" % (", ".join("`%s`" % q for q in b["qschemes"]) or "none declared"))
    if b.get("presets"):
        out.append("")
        out.append("| preset | what it does |")
        out.append("|---|---|")
        for p in b["presets"]:
            out.append("| `%s` | %s |" % (p["name"], p["description"]))
    out.append("")
open(sys.argv[2], "w").write("\n".join(out))
