"""The accelerator catalog file: schema, validation and loading."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wanka.core.hardware import Accelerator, Catalog, Figure, Precision
from wanka.models.errors import SpecError, from_validation_error, load_yaml

STRICT = ConfigDict(extra="forbid", frozen=True)


class FigureSpec(BaseModel):
    model_config = STRICT
    value: float | None = Field(default=None, ge=0)
    source: str | None = None  # a key of the catalog's `sources`
    uncertain: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _sourced(self):
        if self.value is not None and not self.source:
            raise ValueError("a published figure needs a source")
        return self


class AcceleratorSpec(BaseModel):
    model_config = STRICT
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    vendor: str
    model: str
    aliases: list[str] = []
    bf16_tflops: FigureSpec
    fp16_tflops: FigureSpec
    fp8_tflops: FigureSpec
    int8_tops: FigureSpec
    fp32_tflops: FigureSpec
    memory_gib: FigureSpec
    memory_bw_gbs: FigureSpec
    interconnect: str
    interconnect_gbs: FigureSpec
    cards_per_node: int = Field(ge=1, le=64)
    tdp_w: FigureSpec
    devices_per_card: int = Field(default=1, ge=1)
    visible_devices_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    k8s_resource: str
    torch_device: str
    collective_lib: str
    notes: str = ""


class CatalogSpec(BaseModel):
    model_config = STRICT
    schema_version: int = Field(ge=1, le=1)
    sources: dict[str, str]
    accelerators: list[AcceleratorSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _sources_exist(self):
        for i, acc in enumerate(self.accelerators):
            for name, value in acc:
                if isinstance(value, FigureSpec) and value.source and value.source not in self.sources:
                    raise ValueError(
                        f"accelerators[{i}].{name}.source: unknown source {value.source!r}; "
                        f"known: {', '.join(self.sources)}"
                    )
        return self


def _figure(spec: FigureSpec, sources: dict[str, str]) -> Figure:
    return Figure(spec.value, sources.get(spec.source or "", spec.note), spec.uncertain)


def build_catalog(spec: CatalogSpec) -> Catalog:
    src = spec.sources
    accs = []
    for a in spec.accelerators:
        accs.append(
            Accelerator(
                id=a.id,
                vendor=a.vendor,
                model=a.model,
                aliases=tuple(a.aliases),
                peak={
                    Precision.BF16: _figure(a.bf16_tflops, src),
                    Precision.FP16: _figure(a.fp16_tflops, src),
                    Precision.FP8: _figure(a.fp8_tflops, src),
                    Precision.INT8: _figure(a.int8_tops, src),
                    Precision.FP32: _figure(a.fp32_tflops, src),
                },
                memory_gib=_figure(a.memory_gib, src),
                memory_bw_gbs=_figure(a.memory_bw_gbs, src),
                interconnect=a.interconnect,
                interconnect_gbs=_figure(a.interconnect_gbs, src),
                cards_per_node=a.cards_per_node,
                tdp_w=_figure(a.tdp_w, src),
                devices_per_card=a.devices_per_card,
                visible_devices_env=a.visible_devices_env,
                k8s_resource=a.k8s_resource,
                torch_device=a.torch_device,
                collective_lib=a.collective_lib,
            )
        )
    try:
        return Catalog(accs)
    except ValueError as exc:
        raise SpecError("catalog", [("accelerators", str(exc))]) from exc


def parse_catalog(data: dict, source: str = "catalog") -> Catalog:
    try:
        return build_catalog(CatalogSpec.model_validate(data))
    except ValidationError as exc:
        raise from_validation_error(source, exc, CatalogSpec) from None


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The catalog shipped with wanka (``wanka/data/accelerators.yaml``)."""
    text = resources.files("wanka").joinpath("data/accelerators.yaml").read_text(encoding="utf-8")
    return parse_catalog(yaml.safe_load(text), "wanka/data/accelerators.yaml")


def load_catalog(path: str | Path | None = None) -> Catalog:
    return default_catalog() if path is None else parse_catalog(load_yaml(path), str(path))
