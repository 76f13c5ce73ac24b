import pytest

from pimprune.errors import GeometryError, PimpruneError
from pimprune.geometry import Crossbar, grid, parse_geometries


@pytest.mark.parametrize("text,rows,cols", [("128x128", 128, 128), ("64X256", 64, 256), (" 1x1 ", 1, 1)])
def test_parse_valid(text, rows, cols):
    x = Crossbar.parse(text)
    assert (x.rows, x.cols) == (rows, cols)
    assert str(x) == f"{rows}x{cols}"
    assert x.cells == rows * cols


@pytest.mark.parametrize("text", ["0x128", "128", "axb", "-1x5", "12x", "x12", "1.5x3", "", "128x0"])
def test_parse_invalid_is_one_line_user_error(text):
    with pytest.raises(GeometryError) as info:
        Crossbar.parse(text)
    assert isinstance(info.value, PimpruneError)
    assert "\n" not in str(info.value)
    assert "RxC" in str(info.value) or "x" in str(info.value)


def test_constructor_validates():
    with pytest.raises(GeometryError):
        Crossbar(0, 3)
    with pytest.raises(GeometryError):
        Crossbar(True, 3)


def test_parse_list_and_grid():
    assert parse_geometries("32x32,64x128") == [Crossbar(32, 32), Crossbar(64, 128)]
    assert len(grid([32, 64], [16, 8, 4])) == 6
    with pytest.raises(GeometryError):
        parse_geometries([])
