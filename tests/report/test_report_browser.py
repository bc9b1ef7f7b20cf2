"""The HTML report in a real browser: headless Chromium loads report.html from disk and
every figure on it loads (an <img> whose file is missing or not an image fails), and a
screenshot of the page is taken. Skipped where no Chromium is installed (Debian's
`chromium` package; .ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from test_report import _fixture_results

from pipeline.stages.report import run_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt install chromium)")

# appended to a copy of the page: after load, the body records how many images it has
# and which did not load (complete with a natural width, as the browser decoded them)
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0));
  document.body.setAttribute("data-images", imgs.length);
  document.body.setAttribute("data-broken", bad.map(i => i.getAttribute("src")).join(","));
});
</script>"""


def _chromium(*args: str) -> str:
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--allow-file-access-from-files", "--virtual-time-budget=10000",
                          *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _loaded(page) -> tuple[int, str]:
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--dump-dom", probe.as_uri())
    probe.unlink()
    body = re.search(r"<body[^>]*>", dom).group(0)
    images = re.search(r'data-images="(\d+)"', body)
    broken = re.search(r'data-broken="([^"]*)"', body)
    assert images and broken, body
    return int(images.group(1)), broken.group(1)


def test_every_figure_of_the_report_loads_in_chromium(tmp_path):
    res = _fixture_results(tmp_path / "r.parquet")
    run_report([res], tmp_path / "report")
    page = tmp_path / "report" / "report.html"
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    assert pngs
    n, broken = _loaded(page)
    assert (n, broken) == (len(pngs), "")
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    assert shot.stat().st_size > 20_000


def test_the_probe_sees_a_missing_figure(tmp_path):
    res = _fixture_results(tmp_path / "r.parquet")
    run_report([res], tmp_path / "report")
    page = tmp_path / "report" / "report.html"
    gone = sorted(page.parent.glob("*.png"))[0]
    gone.unlink()
    n, broken = _loaded(page)
    assert broken == gone.name and n >= 1
