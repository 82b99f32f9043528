"""Write (or, with --check, compare) the JSON Schema of every document into adapters/documents/schemas/.

python -m scripts.json_schemas          # regenerate after changing a document model
python -m scripts.json_schemas --check  # exit 1 naming the files that differ from the models
"""

from __future__ import annotations

import argparse
import sys

from itertrack.adapters.documents.envelope import SCHEMA_DIR, kind_of, names, schema_text


def main(argv: list[str] | None = None) -> int:
    """Write every schema file (and delete those of documents no longer registered); 1 when --check finds a
    difference."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when a file differs")
    args = parser.parse_args(argv)
    wanted = {kind_of(name).file: schema_text(name) for name in names()}
    stale = [path for path in SCHEMA_DIR.glob("*.schema.json") if path not in wanted]
    differ = [path for path, text in wanted.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in differ + stale:
            sys.stderr.write(
                f"json_schemas: {path.name} differs from the models (run python -m scripts.json_schemas)\n"
            )
        return 1 if differ or stale else 0
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for path in differ:
        path.write_text(wanted[path], encoding="utf-8")
    for path in stale:
        path.unlink()
    sys.stdout.write(f"{len(wanted)} schemas in {SCHEMA_DIR} ({len(differ)} written, {len(stale)} removed)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
