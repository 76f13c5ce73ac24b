import os
import pickle

import pytest
import torch

from pimprune.errors import CheckpointError
from pimprune.training.checkpoint import atomic_write, load_tensors, save_json, save_tensors


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_atomic_write_roundtrip_and_no_temp_left(tmp_path):
    p = save_tensors({"a": torch.arange(3)}, tmp_path / "x.pt")
    assert torch.equal(load_tensors(p)["a"], torch.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]


def test_interrupted_write_leaves_old_file(tmp_path):
    target = tmp_path / "r.json"
    save_json({"v": 1}, target)

    def boom(fh):
        fh.write(b"{partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, boom)
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()
    assert sorted(os.listdir(tmp_path)) == ["r.json"]


def test_pickled_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, p)
    with pytest.raises(CheckpointError, match="refused"):
        load_tensors(p)


@pytest.mark.parametrize("content", [b"", b"garbage bytes", None])
def test_corrupt_or_missing(tmp_path, content):
    p = tmp_path / "c.pt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_tensors(p)
    assert "\n" not in str(info.value)


def test_truncated_checkpoint(tmp_path):
    p = save_tensors({"w": torch.randn(100, 100)}, tmp_path / "t.pt")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_tensors(p)


def test_plain_pickle_file_refused_or_corrupt(tmp_path):
    p = tmp_path / "p.pt"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_tensors(p)


def test_plain_state_dict_leaves_the_masked_model_working():
    """Baking masks into a copy must not strip the original's parametrized weights (a shared class)."""
    import copy

    from torch import nn

    from pimprune.pruning.masking import apply_masks, remove_masks
    from pimprune.training.checkpoint import plain_state_dict

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1, bias=False)).eval()
    masks = {"0.weight": torch.rand(3, 2, 3, 3) > 0.5, "2.weight": torch.rand(4, 3, 1, 1) > 0.5}
    apply_masks(model, masks)
    x = torch.randn(1, 2, 5, 5)
    before = model(x)
    plain = plain_state_dict(model)
    assert torch.equal(model(x), before)
    assert torch.equal(plain["0.weight"], model[0].weight) and not bool(plain["0.weight"][~masks["0.weight"]].any())
    reference = copy.deepcopy(model)
    remove_masks(reference)
    expected = reference.state_dict()
    assert list(plain) == list(expected)
    assert all(torch.equal(plain[k], expected[k]) for k in plain)
