#!/usr/bin/env python3
"""Keeps libtpc's layers pointing down: core <- timer <- io <- net.

Usage: check-layers.py SOURCE_ROOT OBJECT_DIR

1. Includes: no source or private header of a layer includes a private header of a layer above
   it (public headers in include/ are everyone's).
2. Calls and data: in the compiled objects of the library (OBJECT_DIR, meson's private directory
   of the library target), no object of a layer refers to a symbol defined by an object of a
   layer above it. The one exception is the table tpc__layers, which core walks and the top layer
   (net/layers.c) defines: that is how core reaches the layers without naming them.
Prints each upward edge and exits 1 if there is any."""
import os
import re
import subprocess
import sys

ORDER = ["core", "timer", "io", "net"]
ALLOWED = {"tpc__layers"}


def rank(layer):
    return ORDER.index(layer) if layer in ORDER else None


def include_edges(root):
    bad = []
    inc = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
    for layer in ORDER:
        d = os.path.join(root, layer)
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h")):
                continue
            with open(os.path.join(d, name), encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    m = inc.match(line)
                    if not m:
                        continue
                    target = m.group(1)
                    # "x.h" is beside the file; "dir/x.h" names the layer.
                    to = target.split("/")[0] if "/" in target else layer
                    if rank(to) is not None and rank(to) > rank(layer):
                        bad.append(f"{layer}/{name}:{n}: includes {target} ({to} is above {layer})")
    return bad


def symbol_edges(objdir):
    defined, refs = {}, {}
    objs = sorted(o for o in os.listdir(objdir) if o.endswith(".o"))
    if not objs:
        sys.exit(f"check-layers: no objects in {objdir}")
    for o in objs:
        layer = o.split("_")[0]  # meson names core/shard.c's object core_shard.c.o
        out = subprocess.run(["nm", os.path.join(objdir, o)], capture_output=True, text=True,
                             check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDBRC":
                defined[parts[2]] = (layer, o)
            elif len(parts) == 2 and parts[0] == "U":
                refs.setdefault(o, (layer, set()))[1].add(parts[1])
    bad = []
    for o, (layer, syms) in sorted(refs.items()):
        for sym in sorted(syms):
            if sym in ALLOWED or sym not in defined:
                continue
            to, where = defined[sym]
            if rank(layer) is not None and rank(to) is not None and rank(to) > rank(layer):
                bad.append(f"{o}: uses {sym} from {where} ({to} is above {layer})")
    return bad


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bad = include_edges(sys.argv[1]) + symbol_edges(sys.argv[2])
    for b in bad:
        print(b)
    print(f"{len(bad)} upward edges (order: {' <- '.join(ORDER)})")
    # The line scripts/test.sh counts as a case, as it counts cmocka's.
    print("[  FAILED  ] layers_point_down" if bad else "[       OK ] layers_point_down")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
