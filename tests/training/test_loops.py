"""Tests of pimprune.training.loops: sharded evaluation, distillation, mixed precision and channels-last."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from pimprune.errors import ConfigError
from pimprune.training.batching import FolderLoader, TensorLoader
from pimprune.training.loaders import make_loaders
from pimprune.training.loops import Distillation, Execution, evaluate, real_samples

# Odd, so that 2 shards need one padding sample.
TEST_SIZE = 255


@pytest.mark.parametrize("n", [7, 8, 9])
@pytest.mark.parametrize("world", [2, 3])
def test_sharded_evaluation_counts_each_sample_once(n, world):
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(n) % 3
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    cpu = torch.device("cpu")
    whole = evaluate(model, TensorLoader(images, labels, 2), cpu)
    assert whole["samples"] == n
    dataset = TensorDataset(images.float(), labels)
    for make in (
        lambda r: TensorLoader(images, labels, 2, rank=r, world_size=world),
        lambda r: FolderLoader(dataset, 2, shuffle=False, seed=0, drop_last=False,
                               device=cpu, rank=r, world_size=world, num_workers=0),
    ):  # fmt: skip
        shards = [make(r) for r in range(world)]
        counts = [real_samples(s) for s in shards]
        assert sum(counts) == n
        assert sum(evaluate(model, s, cpu)["samples"] for s in shards) == n
    # the padded shards, all counted, would hold more than n samples
    assert sum(TensorLoader(images, labels, 2, rank=r, world_size=world).num_samples
               for r in range(world)) >= n  # fmt: skip


def test_sharded_correct_count_equals_unsharded():
    _, test, _ = make_loaders("synthetic", 16, augment=False, limit_test=TEST_SIZE)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    cpu = torch.device("cpu")
    whole = evaluate(model, test, cpu)
    parts = [
        make_loaders("synthetic", 16, augment=False, limit_test=TEST_SIZE, rank=r, world_size=2)[1] for r in range(2)
    ]
    correct = sum(evaluate(model, p, cpu)["accuracy"] * real_samples(p) for p in parts)
    assert correct == pytest.approx(whole["accuracy"] * TEST_SIZE, abs=1e-6)


def test_distillation_loss_is_a_mixture_and_zero_for_a_perfect_student():
    torch.manual_seed(0)
    teacher = nn.Linear(6, 4)
    x = torch.randn(8, 6)
    y = torch.randint(0, 4, (8,))
    logits = teacher(x).detach()
    ce = nn.functional.cross_entropy(logits, y)
    kd = Distillation(copy.deepcopy(teacher), weight=1.0, temperature=3.0)
    assert float(kd.combine(x, logits, ce, Execution())) == pytest.approx(0.0, abs=1e-6)
    half = Distillation(copy.deepcopy(teacher), weight=0.5, temperature=3.0)
    assert float(half.combine(x, logits, ce, Execution())) == pytest.approx(0.5 * float(ce), rel=1e-5)
    assert not any(p.requires_grad for p in kd.teacher.parameters())


def test_autocast_and_memory_format():
    ex = Execution(precision="bf16", channels_last=True)
    conv = ex.model(nn.Conv2d(3, 8, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = ex.batch(torch.randn(2, 3, 8, 8), torch.device("cpu"))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with ex.autocast(torch.device("cpu")):
        assert conv(x).dtype == torch.bfloat16
    assert conv.weight.dtype == torch.float32  # weights stay float32
    with Execution().autocast(torch.device("cpu")):
        assert conv(x).dtype == torch.float32
    assert Execution().batch(torch.randn(2, 5), torch.device("cpu")).shape == (2, 5)


def test_unknown_precision():
    with pytest.raises(ConfigError, match="unknown precision 'fp8'; choose one of: fp32, bf16"):
        Execution(precision="fp8")
