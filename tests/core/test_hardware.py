import pytest

from wanka.core import Precision, UnknownAccelerator
from wanka.models.hardware import default_catalog

REQUIRED = [
    "Ascend 910B1",
    "Ascend 910B2",
    "Ascend 910B3",
    "Ascend 910B4",
    "Ascend 910C",
    "MLU370-X8",
    "MLU590",
    "K100-AI",
    "P800",
    "C500",
    "S4000",
    "BI-V150",
    "A100",
    "A800",
    "H100",
    "H800",
    "H20",
    "H200",
    "B200",
    "MI300X",
]
FIGURES = ("memory_gib", "memory_bw_gbs", "interconnect_gbs", "tdp_w")


@pytest.mark.parametrize("name", REQUIRED)
def test_catalog_has_every_required_model(name):
    acc = default_catalog().get(name)
    assert acc.rated_tflops > 0
    assert acc.visible_devices_env and acc.k8s_resource and acc.torch_device and acc.collective_lib


def test_every_published_figure_names_its_source():
    for acc in default_catalog():
        figures = list(acc.peak.values()) + [getattr(acc, f) for f in FIGURES]
        for fig in figures:
            if fig.value is not None:
                assert fig.source, f"{acc.id}: a figure without a source"


def test_910c_is_two_devices_per_card_and_ascend_uses_its_own_visibility_variable():
    c = default_catalog().get("ascend-910c")
    assert c.devices_per_card == 2
    assert c.visible_devices_env == "ASCEND_RT_VISIBLE_DEVICES"
    assert default_catalog().get("mlu590").visible_devices_env == "MLU_VISIBLE_DEVICES"


def test_lookup_ignores_case_and_punctuation():
    cat = default_catalog()
    assert cat.get("Ascend910B2") is cat.get("ascend-910b2") is cat.get("ASCEND 910B2")


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownAccelerator) as err:
        default_catalog().get("tpu-v5")
    assert "tpu-v5" in str(err.value) and "ascend-910c" in str(err.value) and "h100" in str(err.value)


def test_precision_without_a_native_mode_counts_as_zero():
    assert default_catalog().get("ascend-910b2").tflops(Precision.FP8) == 0.0
    assert default_catalog().get("h100").tflops(Precision.FP8) == 1979
