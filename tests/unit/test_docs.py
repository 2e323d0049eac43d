"""The README stands on its own in a clone: every relative link resolves inside the repository."""
import re
from support import REPO

REPO = REPO


def test_every_relative_link_of_the_readme_is_in_the_repository():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    targets = [target for target in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in target]
    targets += re.findall(r"`(\.\./[^`]+)`", text)
    assert targets, "the README links to the lab report"
    for target in targets:
        resolved = (REPO / target).resolve()
        assert resolved.is_relative_to(REPO) and resolved.exists(), f"README links to {target}, not in the repository"


def test_the_lab_report_and_its_summary_are_in_the_repository():
    report = REPO / "docs" / "lab-report"
    assert "8080" in (report / "tcp_udp_lab.txt").read_text(encoding="utf-8")
    assert "eleven segments" in (report / "README.md").read_text(encoding="utf-8")
