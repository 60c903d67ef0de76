"""sweeps/emotion6.py --variant: fixes one study per model, and an unknown variant is one line."""
import subprocess
import sys

from tests.helpers.data import write_emotion6
from tests.helpers.sweeps import REPO




def test_variant_flag_fixes_one_study_and_rejects_unknown(tmp_path):
    data_dir = write_emotion6(tmp_path / "e6")
    bad = subprocess.run([sys.executable, "sweeps/emotion6.py", "--data-dir", str(data_dir), "--variant", "int4",
                          "--dry-run"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--variant" in bad.stderr
    good = subprocess.run([sys.executable, "sweeps/emotion6.py", "--data-dir", str(data_dir), "--variant", "qat",
                           "--dry-run"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert good.returncode == 0, good.stderr
    assert "minilm-qat" in good.stdout and "minilm-baseline" not in good.stdout and "lora_r" not in good.stdout
