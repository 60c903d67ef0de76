"""sweeps/emotion6.py --variant: fixes one study per model, and an unknown variant is one line.

`main` runs in this process (the `run_cli` fixture, tests/unit/conftest.py), as `python sweeps/emotion6.py`
would with these flags; --dry-run ends before Ray starts."""
from sweeps import emotion6
from tests.helpers.data import write_emotion6


def test_variant_flag_fixes_one_study_and_rejects_unknown(run_cli, tmp_path):
    data_dir = write_emotion6(tmp_path / "e6")
    bad = run_cli(emotion6, "--data-dir", str(data_dir), "--variant", "int4", "--dry-run")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--variant" in bad.stderr
    good = run_cli(emotion6, "--data-dir", str(data_dir), "--variant", "qat", "--dry-run")
    assert good.returncode == 0, good.stderr
    assert "minilm-qat" in good.stdout and "minilm-baseline" not in good.stdout and "lora_r" not in good.stdout
