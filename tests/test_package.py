"""Package-level promises: `import fmlab` is light, and the console script is wired."""

import subprocess
import sys
import time


def test_import_is_light():
    code = "import sys, time; t = time.perf_counter(); import fmlab; d = time.perf_counter() - t; " \
           "print(d, 'torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False" and out[2] == "False", "import fmlab must not import torch or numpy"
    assert float(out[0]) < 2.0


def test_console_script_runs():
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "fmlab", "--version"], capture_output=True, text=True, check=True)
    assert r.stdout.startswith("fmlab ") and time.perf_counter() - t < 30
