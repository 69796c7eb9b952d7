"""Draw docs/serve.png: the style-search page over the tiny world's style images, two baselines
side by side, one query, as a user gets it (the user commands, then a headless Chromium).

    python pipeline/synth.py world.dir=/tmp/tiny-world        # the embedded default's world
    python docs/make_serve_screenshot.py --world /tmp/tiny-world --work /tmp/shot --out docs/serve.png

Embeds the world's style images with `pipeline/embed.py` (magenta_style, vgg_moments), indexes
them with `pipeline/search.py build`, serves them with `pipeline/serve.py` (labels: technique,
subject, group), clicks one image and saves the page, reduced to 80 % and 64 colours.
"""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root wins imports

import argparse  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402

from common.config import REPO_ROOT  # noqa: E402
from common.files import write_csv  # noqa: E402

MODELS = ("magenta_style", "vgg_moments")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1500,1000"]


def _run(*command: str) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run([sys.executable, *command], check=True)


def prepare(world: Path, work: Path) -> list[Path]:
    rows = pq.read_table(world / "styles.parquet").to_pylist()
    write_csv(work / "labels.csv", ["path", "technique", "subject", "group"],
              [[str((world / r["path"]).resolve()), r["technique"], r["category"], r["group"]] for r in rows])
    indexes = []
    for model in MODELS:
        out = work / f"emb-{model}"
        if not (out / "index" / "index.json").is_file():
            _run(str(REPO_ROOT / "pipeline/embed.py"), "--input", str(world / "styles.parquet"),
                 "--baseline", model, "--out", str(out), "embed.ray.num_actors=1")
            _run(str(REPO_ROOT / "pipeline/search.py"), "build", "--embeddings", str(out))
        indexes.append(out / "index")
    return indexes


def screenshot(indexes: list[Path], labels: Path, work: Path, out: Path, query: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    log = work / "serve.log"
    command = [sys.executable, str(REPO_ROOT / "pipeline/serve.py"), "--port", "0", "--k", "8",
               "--labels", str(labels), "--colour-by", "technique", "--no-upload"]
    command += [arg for index in indexes for arg in ("--index", str(index))]
    with open(log, "w") as handle:
        server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        while "serving on " not in log.read_text():
            if server.poll() is not None:
                raise SystemExit(log.read_text())
            time.sleep(0.5)
        url = log.read_text().split("serving on ")[1].split()[0]
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in FLAGS + [f"--user-data-dir={work / 'profile'}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 120)
            wait.until(lambda d: d.find_elements("css selector", f'#collection figure[data-id="{query}"]'))
            wait.until(lambda d: d.find_elements("css selector", "#map circle"))
            driver.find_element("css selector", f'#collection figure[data-id="{query}"]').click()
            wait.until(lambda d: len(d.find_elements("css selector", "#results figure")) == 16)
            time.sleep(2)   # thumbnails
            driver.save_screenshot(str(work / "page.png"))
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait()
    with Image.open(work / "page.png") as page:
        small = page.convert("RGB").resize((page.width * 4 // 5, page.height * 4 // 5), Image.LANCZOS)
        small.quantize(64).save(out, optimize=True)
    print(f"screenshot: {out} ({out.stat().st_size // 1024} KiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True, type=Path, help="a world of pipeline/synth.py")
    parser.add_argument("--work", required=True, type=Path, help="folder for embeddings and indexes")
    parser.add_argument("--out", default=REPO_ROOT / "docs" / "serve.png", type=Path)
    parser.add_argument("--query", default="s-faces-03-1", help="the style image clicked")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    screenshot(prepare(args.world.resolve(), args.work.resolve()), args.work / "labels.csv",
               args.work.resolve(), args.out, args.query)
    return 0


if __name__ == "__main__":
    sys.exit(main())
