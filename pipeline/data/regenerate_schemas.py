"""Regenerates the checked-in schemas of the bundled datasets:  python -m pipeline.data.regenerate_schemas [--work DIR]

Materialises each bundled dataset, runs ingest (which resolves the feature kinds and id types) and writes
schema/<dataset>/{items/items_schema.pbtxt, interactions/interactions_schema.pbtxt, graph_schema.pbtxt}.
tests/schema/test_build.py asserts the checked-in files equal what schema/build.py makes from the same inputs.
"""

import argparse
import os
import tempfile

from pipeline.data import datasets, ingest
from schema import build


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="pinsage-schema-")
    for name in build.BUNDLED:
        data = os.path.join(work, "data", name)
        datasets.materialise(name, data)
        _, report = ingest.canonicalise(data, os.path.join(work, "ingest"))
        paths = build.write_all(
            report["spec"],
            report["items"]["id_type"],
            report["interactions"]["context_id_type"],
            build.bundled_dir(name),
        )
        print(name, paths)


if __name__ == "__main__":
    main()
