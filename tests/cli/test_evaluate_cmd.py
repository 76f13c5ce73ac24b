"""``pimprune evaluate --on-chip``: JSON and text output, and one-line errors for bad options."""

import json

import pytest

from pimprune.cli import main

PRUNED = "results/headline/subrow-1pt/model.pt"
DATA = ["--dataset", "fashion-mnist-subset", "--limit-test", "100", "--device", "cpu"]


def test_on_chip_json(capsys):
    data = [*DATA[:2], "--limit-test", "10", "--device", "cpu"]  # every ADC read: slow, a few images
    code = main(["evaluate", PRUNED, *data, "--on-chip", "--numerics", "neurosim", "--calibration-images", "64",
                 "--set", "numerics.variation_sigma=0.05", "--repeats", "2", "--seed", "3", "--json"])  # fmt: skip
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["crossbar"], res["scheme"], res["path"]) == ("32x32", "subrow", "reads")  # 5-bit ADC: every read
    assert res["numerics"]["adc_bits"] == 5 and res["numerics"]["variation_sigma"] == 0.05
    assert res["seeds"] == [3, 4] and len(res["accuracies"]) == 2 and res["samples"] == 10
    assert 0 <= res["accuracy_mean"] <= 1


def test_on_chip_text(capsys):
    assert main(["evaluate", PRUNED, *DATA, "--on-chip", "--crossbar", "64x64"]) == 0
    out = capsys.readouterr().out
    assert "(test), on-chip (isaac numerics, 16-bit weights, 64x64 subrow from --crossbar" in out and "fp32" in out


def test_validation_split_instead_of_test(capsys):
    """With --validation N both evaluations read the fixed held-out split (where choices are made)."""
    data = ["--dataset", "fashion-mnist-subset", "--validation", "100", "--device", "cpu", "--json"]
    assert main(["evaluate", PRUNED, *data]) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert (fp32["split"], fp32["samples"]) == ("validation", 100)
    assert main(["evaluate", PRUNED, *data, "--on-chip", "--calibration-images", "64"]) == 0
    chip = json.loads(capsys.readouterr().out)
    assert (chip["split"], chip["samples"]) == ("validation", 100)
    assert chip["accuracy_fp32"] == fp32["accuracy"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--repeats", "2"], "--repeats only apply with --on-chip"),
        (["--numerics", "isaac", "--crossbar", "8x8"], "--numerics, --crossbar only apply with --on-chip"),
        (["--on-chip", "--numerics", "nosuch"], "no numerics preset or file 'nosuch'"),
        (["--on-chip", "--set", "adc_bits=4"], "takes numerics.FIELD=VALUE"),
        (["--on-chip", "--set", "numerics.adc_bits"], "--set needs FIELD=VALUE"),
        (["--on-chip", "--set", "numerics.sigma=0.1"], "unknown numerics field 'sigma'"),
        (["--on-chip", "--set", "numerics.weight_bits=1"], "weight_bits must be an integer in 2..24"),
        (["--on-chip", "--set", "numerics.stuck_at_one=2"], "at most 1"),
        (["--on-chip", "--crossbar", "0x4"], "crossbar"),
        (["--on-chip", "--repeats", "0"], "expected a positive integer"),
    ],
)
def test_bad_on_chip_options_are_one_line_errors(extra, message, capsys):
    try:
        code = main(["evaluate", PRUNED, *DATA, *extra])
    except SystemExit as exc:  # argparse refuses a bad number itself
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
