"""report.html: the evaluation's Markdown report as a page that opens from disk."""
import re
from html.parser import HTMLParser

from PIL import Image

from evaluation.report import html_report, write_html_report


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_the_page_holds_the_tables_and_links_the_pictures_present(tmp_path):
    (tmp_path / "report.md").write_text(
        "# Style retrieval evaluation\n\nModel `<script>alert(1)</script>` and *chance*.\n\n"
        "| model | test-a |\n|---|---|\n| nst | 51.20 |\n| *chance* | 3.76 |\n")
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "retrieval_grid.png")
    page = write_html_report(tmp_path).read_text()
    assert "<td>nst</td>" in page and "<td>51.20</td>" in page and "<h1>" in page
    parser = _Images()
    parser.feed(page)
    assert parser.sources == ["retrieval_grid.png"]   # relative, and only pictures that exist
    assert (tmp_path / parser.sources[0]).is_file()
    assert "<script>" not in page and "&lt;script&gt;" in page   # names are text, never markup
    assert not re.search(r'src="/', html_report("x", ["tagging.png"]))
