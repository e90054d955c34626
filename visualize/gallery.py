"""Render the diagram gallery: python visualize/gallery.py [--out DIR] [--seed N]

Writes each picture as SVG and PNG plus index.html (captions and the `tinygrad-bn check` table)
into DIR (default: visualize/gallery, whose PNGs the README shows)."""
import argparse
from pathlib import Path

from tinygrad_bn.gallery import render_gallery

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "gallery"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in render_gallery(args.out, seed=args.seed):
        print(path)
