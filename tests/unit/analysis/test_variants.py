"""analysis.variants on a directory that is not an experiment: one line, exit 2."""


from analysis.variants import main


def test_variants_on_a_non_experiment_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err
