"""Compare runs offline, from their own files: ``python compare.py logs/train/multiruns/<date>``
(a sweep folder, run folders, or both). Writes comparison.md / .csv, comparison_over_seeds.csv
when seeds or cross-validation folds (data.fold) vary, and curves.png (the watched metric by epoch, one line per run)."""

import argparse
import sys
from pathlib import Path

from src.core.errors import UserError
from src.utils.results import write_comparison


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="a sweep folder or run folders (they hold .hydra/)")
    parser.add_argument("--out", type=Path, help="where to write the table and plot "
                        "(default: the folder given, when one is; else ./comparison)")
    args = parser.parse_args(argv)
    out = args.out or (Path(args.paths[0]) if len(args.paths) == 1 else Path("comparison"))
    try:
        print(write_comparison(args.paths, out))
    except UserError as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 1
    print(f"Written to {out}/: comparison.md, comparison.csv, comparison_over_seeds.csv (when seeds or folds vary), curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
