"""Reading NeuroSim's report: chip values, floorplan, per-layer values, sub-arrays, failures."""

import pytest

from pimprune.hardware.neurosim import mapping_check
from pimprune.hardware.neurosim_report import parse_report, subarrays, summarize

# Excerpt of DNN+NeuroSim V1.4's stdout (commit ac828e6, default Param.cpp) for a 2-layer net: 3x3 8->32
# then 3x3 32->32 on 8x8, 8-bit weights and inputs, 128-row sub-arrays (a conventional and a novel tile).
TINY = [(8, 8, 8, 3, 3, 32, 0, 1), (8, 8, 32, 3, 3, 32, 0, 1)]
REPORT = """\
------------------------------ FloorPlan --------------------------------

Desired Conventional Mapped Tile Storage Size: 512x512
Desired Conventional PE Storage Size: 256x256
Desired Novel Mapped Tile Storage Size: 9x256x256
User-defined SubArray Size: 128x128

----------------- # of tile used for each layer -----------------
layer1: 1
layer2: 1

----------------- Speed-up of each layer ------------------
layer1: 8
layer2: 2

----------------- Utilization of each layer ------------------
layer1: 0.5625
layer2: 0.25
Memory Utilization of Whole Chip: 40.625 %

---------------------------- FloorPlan Done ------------------------------
clkPeriod: 1.6974e-09
-------------------- Estimation of Layer 1 ----------------------
layer1's readLatency is: 2678.5ns
layer1's readDynamicEnergy is: 11666.1pJ
layer1's leakagePower is: 0.857866uW
layer1's leakageEnergy is: 2.88026pJ
-------------------- Estimation of Layer 2 ----------------------
layer2's readLatency is: 3357.47ns
layer2's readDynamicEnergy is: 88346.2pJ
layer2's leakagePower is: 1.9302uW
layer2's leakageEnergy is: 6.48058pJ
------------------------------ Summary --------------------------------

ChipArea : 937874um^2
Chip total CIM array : 115459um^2
Chip clock period is: 1.6974ns
Chip pipeline-system-clock-cycle (per image) is: 3357.47ns
Chip pipeline-system readDynamicEnergy (per image) is: 100012pJ
Chip pipeline-system leakage Energy (per image) is: 9.36084pJ
Energy Efficiency TOPS/W (Pipelined Process): 12.0839
Throughput FPS (Pipelined Process): 297844
"""


def test_parse_the_tiny_report():
    report = parse_report(REPORT)
    assert report.error is None
    assert report.values["chip_area_um2"] == 937874 and report.values["cycle_ns"] == 3357.47
    assert report.values["memory_utilization_pct"] == 40.625
    assert report.sizes == {"cm_tile": (512, 512), "cm_pe": (256, 256), "nm_tile": (9, 256, 256),
                            "subarray": (128, 128)}
    assert [layer["tiles"] for layer in report.layers] == [1, 1]
    assert [layer["speedup"] for layer in report.layers] == [8, 2]
    assert report.layers[1]["latency_ns"] == 3357.47 and report.layers[0]["leakage_energy_pj"] == 2.88026


def test_subarrays_and_summary():
    report = parse_report(REPORT)
    check = mapping_check(TINY, 8, 128)
    assert check.novel == (False, True)
    # a conventional tile: (512/256)^2 PEs of (256/128)^2 sub-arrays; a novel tile: 9 PEs of 2x2
    assert subarrays(report, check) == [16, 36]
    s = summarize(report, check)
    assert s["subarrays"] == 52 and s["tiles"] == 2
    # 2220 um^2 per 128x128 SRAM sub-array, as NeuroSim's CIM array area says
    assert report.values["cim_array_area_um2"] / s["subarrays"] == pytest.approx(2220.36, abs=0.01)
    assert s["energy_nj"] == pytest.approx((100012 + 9.36084) / 1e3)
    assert s["latency_sum_ns"] == pytest.approx(2678.5 + 3357.47) and s["area_mm2"] == pytest.approx(0.937874)


def test_failures_are_reported():
    failed = parse_report("ERROR: SubArray Size is too large, which break the chip hierarchey, ...\n")
    assert "SubArray Size is too large" in failed.error
    cut = parse_report(REPORT.split("------------------------------ Summary")[0])
    assert "no chip area" in cut.error
