"""Hardware configuration of a crossbar accelerator: :class:`HardwareConfig`, its presets and overrides.

Every constant of the energy / area / latency model (:mod:`pimprune.hardware.cost`)
lives in typed frozen dataclasses (:mod:`pimprune.hardware.components`,
:mod:`pimprune.hardware.adc`) whose field names carry the unit. The defaults
are the ``isaac`` preset (ISAAC, ISCA 2016, Table I, 32 nm). Configurations are
loaded from YAML or JSON (:func:`load_preset`) and any field can be overridden by
its dotted path (:func:`with_overrides`), e.g. ``{"adc.sampling_rate_gsps": 2.56}``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pimprune.errors import ConfigError
from pimprune.hardware.adc import AdcModel, adc_bits
from pimprune.hardware.components import (
    SIGN_SCHEMES,
    AdderModel,
    ArrayModel,
    ChipLayout,
    DacModel,
    ImaLayout,
    IndexOverhead,
    Registers,
    SampleHold,
    ShiftAdd,
    SignScheme,
    check_fields,
    physical_arrays,
)
from pimprune.numeric import cdiv
from pimprune.registry import Registry

__all__ = [
    "PRESETS",
    "HardwareConfig",
    "config_from_dict",
    "config_to_dict",
    "load_preset",
    "merge_fields",
    "read_config_file",
    "with_overrides",
]


@dataclass(frozen=True)
class HardwareConfig:
    """A crossbar accelerator: data widths, timing and every component model.

    The defaults are the ``isaac`` preset (ISAAC, ISCA 2016, Table I, 32 nm).

    Attributes:
        name: Preset name.
        technology: Process node the constants are for.
        source: Where the constants come from.
        cell_bits: Bits per memristor cell ``w`` (ISAAC: 2).
        weight_bits: Bits per weight (ISAAC: 16); a weight spans
            ``ceil(weight_bits / cell_bits)`` slices on separate arrays.
        input_bits: Bits per input (ISAAC: 16), fed ``dac_bits`` per cycle.
        dac_bits: Bits per DAC conversion ``v`` (ISAAC: 1).
        signed: Signed-weight scheme, a name of :data:`SIGN_SCHEMES` (ISAAC-like: offset).
        adc_bits_saved: ADC bits an encoding saves over :func:`adc_bits` (ISAAC's
            weight flipping saves 1, giving its 8-bit ADC for 128 rows).
        columns_per_adc: Bitlines sharing one ADC (ISAAC: 128, one ADC per array); a
            shared ADC converts its columns one after the other.
        read_cycle_ns: Crossbar read cycle (ns) (ISAAC: 100).
        adc: ADC model.
        dac: DAC model.
        sample_hold: Sample-and-hold model.
        array: Memristor array model.
        shift_add: Shift-and-add model.
        registers: Input / output register model.
        index: Index and routing overhead of compacted crossbars.
        adder: Digital adders of partial sums computed on several crossbars.
        ima: Reference tile of the preset's headline figures.
        chip: The chip's arrays, PEs and tiles, for latency, replication and tile area.
    """

    name: str = "isaac"
    technology: str = "32nm"
    source: str = "ISAAC (Shafiee et al., ISCA 2016) Table I; ADC scaling of docs/design.md section 6"
    cell_bits: int = 2
    weight_bits: int = 16
    input_bits: int = 16
    dac_bits: int = 1
    signed: str = "offset"
    adc_bits_saved: int = 1
    columns_per_adc: int = 128
    read_cycle_ns: float = 100.0
    adc: AdcModel = field(default_factory=AdcModel)
    dac: DacModel = field(default_factory=DacModel)
    sample_hold: SampleHold = field(default_factory=SampleHold)
    array: ArrayModel = field(default_factory=ArrayModel)
    shift_add: ShiftAdd = field(default_factory=ShiftAdd)
    registers: Registers = field(default_factory=Registers)
    index: IndexOverhead = field(default_factory=IndexOverhead)
    adder: AdderModel = field(default_factory=AdderModel)
    ima: ImaLayout = field(default_factory=ImaLayout)
    chip: ChipLayout = field(default_factory=ChipLayout)

    def __post_init__(self) -> None:
        check_fields(
            self,
            "",
            positive=(
                "cell_bits",
                "weight_bits",
                "input_bits",
                "dac_bits",
                "columns_per_adc",
                "read_cycle_ns",
            ),
        )
        for name in ("cell_bits", "dac_bits"):
            if getattr(self, name) > 16:
                raise ConfigError(f"hardware field {name} must be at most 16, got {getattr(self, name)}")
        SIGN_SCHEMES.get(self.signed)
        if self.adc.sampling_rate_gsps <= 0 or self.adc.reference_bits < 1:
            raise ConfigError(
                "adc.sampling_rate_gsps must be > 0 and adc.reference_bits >= 1, got "
                f"{self.adc.sampling_rate_gsps} and {self.adc.reference_bits}"
            )
        if self.adc.bits is not None and self.adc.bits < 1:
            raise ConfigError(f"adc.bits must be >= 1 or null (derived), got {self.adc.bits}")

    @property
    def slices(self) -> int:
        """Weight slices: arrays (or column groups) one weight spans, ``ceil(b_w / b_c)``."""
        return cdiv(self.weight_bits, self.cell_bits)

    @property
    def input_cycles(self) -> int:
        """Read cycles per matrix-vector product, ``ceil(input_bits / dac_bits)``."""
        return cdiv(self.input_bits, self.dac_bits)

    @property
    def sign(self) -> SignScheme:
        """The :class:`SignScheme` named by :attr:`signed`."""
        return SIGN_SCHEMES.get(self.signed)

    @property
    def physical_arrays(self) -> int:
        """Physical arrays per logical crossbar (one weight per cell): slices x sign factor."""
        return physical_arrays(self.slices, self.signed)

    @property
    def chip_crossbars(self) -> int:
        """Logical crossbars the chip holds: ``tiles * floor(arrays_per_tile / physical_arrays)``."""
        return self.chip.tiles * (self.chip.arrays_per_tile // self.physical_arrays)

    def adc_resolution(self, active_rows: int) -> int:
        """ADC bits for ``active_rows`` rows: ``adc.bits`` if fixed, else :func:`adc_bits`."""
        if active_rows <= 0:
            return 0
        if self.adc.bits is not None:
            return self.adc.bits
        return adc_bits(active_rows, self.cell_bits, self.dac_bits, self.adc_bits_saved)


# --------------------------------------------------------------------------- (de)serialisation


def config_to_dict(cfg: HardwareConfig) -> dict[str, Any]:
    """Plain nested dictionary of a configuration (ADC tables as ``{bits: value}``)."""

    def conv(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: conv(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, tuple):
            return {int(b): v for b, v in obj}
        return obj

    return conv(cfg)


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str, what: str = "hardware") -> Any:
    """Check and convert a loaded value to a field type (bool, int, float, str, optional)."""
    args = typing.get_args(tp)
    if type(None) in args:
        if value is None:
            return None
        (tp,) = [a for a in args if a is not type(None)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # tables: normalised and checked by the dataclass
        return value
    raise ConfigError(f"{what} field {path} must be {_describe(tp)}, got {value!r}")


def merge_fields(cls: type, base: Any, data: Mapping[str, Any], prefix: str = "", what: str = "hardware") -> Any:
    """A copy of the frozen dataclass ``base`` (of type ``cls``) with the fields in ``data`` replaced.

    Nested dataclass fields take nested mappings; values are checked against the field
    types (bool, int, float, str, optional) and the dataclass checks its ranges.

    Args:
        cls: The dataclass type.
        base: The instance the missing fields come from.
        data: Field name -> value (a mapping for a nested dataclass).
        prefix: Dotted path of ``base`` inside its parent, for messages.
        what: What the fields configure (``hardware``, ``numerics``), for messages.

    Raises:
        ConfigError: on an unknown field, a wrong type or an out-of-range value.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{what} field {prefix.rstrip('.') or '(top level)'} must be a mapping of fields, got {data!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            where = f"of {prefix.rstrip('.')}" if prefix else "at the top level"
            raise ConfigError(f"unknown {what} field {path!r}; known fields {where}: {', '.join(sorted(fields))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            changes[key] = merge_fields(tp, getattr(base, key), value, f"{path}.", what)
        else:
            changes[key] = _coerce(value, tp, path, what)
    try:
        return dataclasses.replace(base, **changes)
    except TypeError as exc:  # pragma: no cover - guarded by the field check above
        raise ConfigError(f"invalid {what} fields under {prefix or 'top level'}: {exc}") from None


def config_from_dict(data: Mapping[str, Any], base: HardwareConfig | None = None) -> HardwareConfig:
    """Build a configuration from a nested dictionary; missing fields come from ``base``.

    Raises:
        ConfigError: on an unknown field, a wrong type or an out-of-range value.
    """
    return merge_fields(HardwareConfig, base or HardwareConfig(), data, "")


def with_overrides(cfg: HardwareConfig, overrides: Mapping[str, Any]) -> HardwareConfig:
    """A copy of ``cfg`` with fields replaced by dotted path.

    Example: ``with_overrides(cfg, {"adc.sampling_rate_gsps": 2.56, "read_cycle_ns": 50})``.

    Raises:
        ConfigError: on an unknown path or an invalid value.
    """
    nested: dict[str, Any] = {}
    for path, value in overrides.items():
        parts = str(path).split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"hardware override {path!r} conflicts with another override")
        node[parts[-1]] = value
    return config_from_dict(nested, cfg)


# --------------------------------------------------------------------------- presets

#: Preset name -> YAML file in the ``pimprune/hardware/presets`` package folder.
PRESETS: Registry[str] = Registry("hardware preset")
PRESETS.add("isaac", "isaac32.yaml")

_MAX_BASE_DEPTH = 8


def read_config_file(path: Path, what: str = "hardware") -> Any:
    """The content of a YAML or JSON configuration file (JSON by the ``.json`` suffix).

    Raises:
        ConfigError: if the file cannot be read or parsed (one line, naming ``what``).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split())
        raise ConfigError(f"{what} file {path} is not valid YAML/JSON: {first[:200]}") from None


def _load(source: str | Path, depth: int) -> HardwareConfig:
    if depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"hardware file {source}: 'base' chain deeper than {_MAX_BASE_DEPTH}")
    text = str(source)
    if text in PRESETS:
        path = Path(str(resources.files("pimprune") / "hardware" / "presets" / PRESETS.get(text)))
        default_name = text
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(
                f"no hardware preset or file {text!r}; use a preset "
                f"({', '.join(PRESETS.names())}) or a .yaml/.json file"
            )
        default_name = path.stem
    data = read_config_file(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"hardware file {path} must hold a mapping of fields, got {type(data).__name__}")
    data = dict(data)
    base_ref = data.pop("base", None)
    if base_ref is not None:
        ref = str(base_ref)
        if ref not in PRESETS and not Path(ref).is_absolute():
            ref = str(path.parent / ref)
        base = _load(ref, depth + 1)
    else:
        base = HardwareConfig()
    data.setdefault("name", default_name)
    return config_from_dict(data, base)


def load_preset(source: str | Path | HardwareConfig = "isaac") -> HardwareConfig:
    """A configuration by preset name (``isaac``) or from a YAML / JSON file.

    A file may name ``base: PRESET_OR_FILE`` and give only the fields it changes;
    without ``base`` the missing fields take the ``isaac`` defaults.

    Raises:
        ConfigError: on a missing or unreadable file, or an invalid field.
    """
    if isinstance(source, HardwareConfig):
        return source
    return _load(source, 0)
