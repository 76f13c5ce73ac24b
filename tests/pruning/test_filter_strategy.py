import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget

EXAMPLE = torch.zeros(1, 3, 32, 32)


@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_filter_removes_whole_channels_with_their_bn_and_consumer_rows(narrow_results, allocation):
    proj, masks = narrow_results["filter", allocation]
    w = masks["layer3.0.conv1.weight"]
    gone = ~w.any(dim=(1, 2, 3))
    assert gone.any() and not gone.all()
    assert torch.equal(~masks["layer3.0.bn1.weight"], gone)
    assert torch.equal(~masks["layer3.0.bn1.bias"], gone)
    assert torch.equal(~masks["layer3.0.conv2.weight"].any(dim=(0, 2, 3)), gone)
    assert proj.silenced_outputs()["layer3.0.conv1"] == int(gone.sum())


def test_retarget_out_of_reach_keeps_the_old_target(narrow):
    proj = Projector(narrow, PruneTarget("filter", "32x32", 2.0, allocation="global"), EXAMPLE)
    graph = proj._strategy.graph
    with pytest.raises(ConfigError, match="highest reachable"):
        proj.retarget(1000.0)
    assert proj.target.target_compression == 2.0
    proj.retarget(3.0)
    assert proj._strategy.graph is graph  # traced once
