"""`harness lab --html`: one self-contained page, opened in a real headless browser (Debian's
chromium), which lays out every ladder, its rows, phases, states and legend, and the walk-through;
a screenshot is taken and kept beside the page."""
import json
import re
import subprocess

import pytest

from harness.cli import main

from support import needs

MEASURE = """<script>
window.addEventListener('load', () => {
  const box = e => { const r = e.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; };
  const found = {
    ladders: [...document.querySelectorAll('.ladder svg')].map(box),
    segments: [...document.querySelectorAll('.ladder g.segment')].map(box),
    phases: [...document.querySelectorAll('.ladder g.phase')].map(g => g.getAttribute('data-phase')),
    states: [...document.querySelectorAll('.ladder text.state')].map(t => t.textContent),
    legends: [...document.querySelectorAll('.ladder g.legend')].map(box),
    walkthroughs: [...document.querySelectorAll('.walkthrough p')].length,
    external: [...document.querySelectorAll('[src]')].length,
  };
  const out = document.createElement('pre'); out.id = 'measured'; out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""


def chromium(*arguments, timeout=120):
    return subprocess.run([needs.tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-dev-shm-usage", *arguments],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.capture
def test_the_lab_page_renders_its_ladders_phases_states_and_walk_throughs(capture_backend, tmp_path, capsys):
    page = tmp_path / "lab.html"
    assert main(["lab", "--quiet", "--backend", capture_backend, "--pcap-dir", str(tmp_path), "--html", str(page),
                 "--lang", "en"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"html: {page}"
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "<script" not in text
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(text.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    done = chromium("--dump-dom", "--virtual-time-budget=5000", measured_page.as_uri())
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(measured["ladders"]) == 3 and all(w > 800 and h > 200 for w, h in measured["ladders"])
    assert len(measured["segments"]) == 11 + 4 + 6 and all(w > 300 and h > 5 for w, h in measured["segments"])
    assert measured["phases"] == ["handshake", "data", "teardown"] * 2
    assert measured["states"][:2] == ["CLOSED", "LISTEN"] and "TIME_WAIT" in measured["states"]
    assert len(measured["legends"]) == 3 and all(h > 100 for _, h in measured["legends"])
    assert measured["walkthroughs"] >= 11 + 4 + 6 and measured["external"] == 0
    screenshot = tmp_path / "lab.png"
    done = chromium(f"--screenshot={screenshot}", "--window-size=1200,2400", page.as_uri())
    assert screenshot.is_file(), done.stderr[-2000:]
    header = screenshot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) == (1200, 2400)
    assert screenshot.stat().st_size > 50_000, "a page of ladders and text is no blank image"
