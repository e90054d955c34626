"""Render the diagram gallery: python visualize/gallery.py [--out DIR] [--seed N]

Writes each picture as SVG and PNG, index.html (captions and the `tinygrad-bn check` table) and
interactive.html (tg.viz.to_html) into DIR (default: visualize/gallery, whose PNGs the README
shows), and, where Chromium is installed, interactive.png: a screenshot of the page after the
backward step at which batch norm's xc has received both of its gradients (README's first picture)."""
import argparse
import shutil
import subprocess
from pathlib import Path

from tinygrad_bn.gallery import render_gallery
from tinygrad_bn.html import page_data


def screenshot(page: Path, png: Path) -> None:
    """The page expanded, at the step that completes xc's gradient: the sum of what its two
    consumers (x_hat = xc / std and var = mean(xc^2)) send back."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium: interactive.png not rendered")
        return
    data = page_data(page.read_text())
    step = next(i + 1 for i, s in enumerate(data["steps"]) for e in s["sends"]
                if e["of"] > 1 and e["arrived"] == e["of"] and data["nodes"][e["to"]].get("name") == "xc")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                    "--window-size=1400,860", "--virtual-time-budget=5000",
                    f"file://{page.resolve()}#expand&step={step}"], check=True, capture_output=True)
    print(png)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "gallery"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in render_gallery(args.out, seed=args.seed):
        print(path)
    screenshot(Path(args.out) / "interactive.html", Path(args.out) / "interactive.png")
