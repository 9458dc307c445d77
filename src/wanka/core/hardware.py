"""Accelerator catalog: what each card model can do, with the source of every figure.

The catalog's data lives in YAML (``wanka/data/accelerators.yaml``) and is validated by
``wanka.models.hardware``; this module holds the plain, immutable objects the scheduler uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Precision(StrEnum):
    """Numeric formats a card's peak throughput is quoted in (dense, no sparsity)."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"  # TOPS, not TFLOPS
    FP32 = "fp32"


@dataclass(frozen=True, slots=True)
class Figure:
    """One published number, where it came from, and whether sources disagree."""

    value: float | None
    source: str = ""
    uncertain: bool = False


UNKNOWN = Figure(None)


def normalise_name(name: str) -> str:
    """Case- and punctuation-insensitive key: 'Ascend 910B2' == 'ascend-910b2' == 'Ascend910B2'."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One accelerator model (a *card*: the unit wanka schedules and counts).

    ``devices_per_card`` is how many devices software sees per card: an Ascend 910C package
    holds two dies, so a job given one 910C card sees two NPU device ids.
    """

    id: str
    vendor: str
    model: str
    aliases: tuple[str, ...] = ()
    peak: Mapping[Precision, Figure] = field(default_factory=dict)
    memory_gib: Figure = UNKNOWN
    memory_bw_gbs: Figure = UNKNOWN
    interconnect: str = ""
    interconnect_gbs: Figure = UNKNOWN
    cards_per_node: int = 8
    tdp_w: Figure = UNKNOWN
    devices_per_card: int = 1
    visible_devices_env: str = "CUDA_VISIBLE_DEVICES"
    k8s_resource: str = ""
    torch_device: str = "cuda"
    collective_lib: str = ""

    def tflops(self, precision: Precision | str) -> float:
        """Dense peak per card at ``precision`` (TOPS for int8); 0.0 when the card has no such mode."""
        figure = self.peak.get(Precision(precision))
        return float(figure.value) if figure is not None and figure.value is not None else 0.0

    @property
    def rated_tflops(self) -> float:
        """Half-precision dense peak: the card's rated figure, used to normalise compute across vendors."""
        return self.tflops(Precision.BF16) or self.tflops(Precision.FP16)

    def names(self) -> set[str]:
        return {normalise_name(n) for n in (self.id, self.model, *self.aliases)}


class UnknownAccelerator(KeyError):
    """Raised for a model name the catalog does not know; the message lists the known ids."""

    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown accelerator {name!r}; known models: {', '.join(self.known)}")

    def __str__(self) -> str:
        return str(self.args[0])


class Catalog:
    """All known accelerator models, looked up by id, model name, alias or (for filters) vendor."""

    def __init__(self, accelerators: Iterable[Accelerator]):
        self._by_id: dict[str, Accelerator] = {}
        self._by_name: dict[str, Accelerator] = {}
        for acc in accelerators:
            if acc.id in self._by_id:
                raise ValueError(f"duplicate accelerator id {acc.id!r}")
            self._by_id[acc.id] = acc
            for key in acc.names():
                other = self._by_name.setdefault(key, acc)
                if other is not acc:
                    raise ValueError(f"accelerator name {key!r} is used by both {other.id} and {acc.id}")
        self.vendors = frozenset(a.vendor for a in self._by_id.values())

    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, name: str) -> bool:
        return normalise_name(name) in self._by_name

    def ids(self) -> list[str]:
        return list(self._by_id)

    def get(self, name: str) -> Accelerator:
        try:
            return self._by_name[normalise_name(name)]
        except KeyError:
            raise UnknownAccelerator(name, self._by_id) from None
