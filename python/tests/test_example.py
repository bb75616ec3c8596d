"""examples/api/quantize.py runs end to end (on generated npy data), and docs/api.md shows the
example programs exactly as they are in examples/api/."""
import os
import re
import subprocess
import sys

from conftest import SOURCE_DIR, write_npy_data


def test_python_example(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run(
        [sys.executable, str(SOURCE_DIR / "examples" / "api" / "quantize.py"),
         "--model", str(SOURCE_DIR / "models" / "lenet5-fmnist.sqg"),
         "--target", str(SOURCE_DIR / "targets" / "shiftadd.json"),
         "--data", "npy", "--data-dir", str(write_npy_data(tmp_path)),
         "--limit-train", "200", "--limit-test", "100", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"integer engine accuracy [0-9.]+% on 100 test images", p.stdout), p.stdout
    for name in ("model.sqm", "model.sqg", "log.json", "bits.json"):
        assert (out / name).exists(), name


def fenced_blocks(markdown, language):
    return re.findall(r"```" + language + r"\n(.*?)```", markdown, flags=re.S)


def test_docs_show_the_examples_verbatim():
    doc = (SOURCE_DIR / "docs" / "api.md").read_text()
    for name, language in (("quantize_model.cpp", "cpp"), ("quantize.py", "python"),
                           ("CMakeLists.txt", "cmake")):
        text = (SOURCE_DIR / "examples" / "api" / name).read_text()
        assert text in fenced_blocks(doc, language), \
            f"docs/api.md: no {language} block equal to examples/api/{name}"
