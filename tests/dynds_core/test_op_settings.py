"""The op layer's settings (dynds_core.op_settings): one definition of the reduced pass's choices, defaults
and kernel pooling check, which the spec takes as they are; the op layer does not import the spec."""

import subprocess
import sys

import pytest

from dynds_core import ops, spec
from dynds_core.op_settings import DEFAULT_KERNEL, KernelSettings, check_kernel_pooling, kernel_settings
from dynds_core.spec import JobSpec, KernelPooling, SpecError

BAD_KERNELS = [
    dict(mode="avg", stride=3, scale="none"),  # a stride past the window skips taps
    dict(mode="max", scale="sum"),
    dict(mode="resize"),  # no size
]


def test_the_spec_names_the_op_layers_choices():
    for name in ("INPUT_MODES", "KERNEL_MODES", "KERNEL_SCALES"):
        assert getattr(spec, name) is getattr(ops, name)
    assert spec.PAD_SIDES == ("end", "start", "alternate") and spec.BN_MODES == ("frozen", "shared", "separate")


def test_the_specs_kernel_defaults_are_the_op_layers():
    assert kernel_settings(KernelPooling()) == KernelSettings() == DEFAULT_KERNEL
    assert kernel_settings(None) == kernel_settings({}) == DEFAULT_KERNEL


@pytest.mark.parametrize("kernel", BAD_KERNELS, ids=lambda k: "-".join(map(str, k.values())))
def test_the_spec_refuses_a_kernel_with_the_op_layers_message(kernel):
    fields = {**dict(mode="avg", window=2, stride=1, size=None, scale="sum"), **kernel}
    with pytest.raises(ValueError) as op_error:
        check_kernel_pooling(fields["mode"], fields["window"], fields["stride"], fields["size"], fields["scale"])
    with pytest.raises(SpecError) as spec_error:
        JobSpec.parse({"dynds": {"kernel": kernel}})
    assert str(op_error.value) in dict(spec_error.value.errors)["dynds.kernel"]
    with pytest.raises(ValueError, match="invalid kernel settings"):
        kernel_settings(kernel)


def test_kernel_settings_forms():
    assert kernel_settings({"mode": "resize", "size": [2, 2]}).size == (2, 2)  # a list from JSON: hashable
    assert kernel_settings(KernelPooling(mode="avg", stride=2)) == KernelSettings(stride=2)
    with pytest.raises(ValueError, match="unknown key.*'windw'"):
        kernel_settings({"windw": 3})
    with pytest.raises(ValueError, match="pad_side"):
        KernelSettings(pad_side="middle")
    with pytest.raises(TypeError, match="got int"):
        kernel_settings(3)


def _imported_after(statement):
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


def test_the_op_layer_does_not_import_the_spec_and_the_spec_does_not_import_torch():
    op_layer = _imported_after("import dynds_core.reduced, dynds_core.ops")
    assert "dynds_core.spec" not in op_layer and "pydantic" not in op_layer
    assert "torch" not in _imported_after("import dynds_core.spec")  # the service reads specs without torch


def test_a_spec_section_is_converted_once_per_value_not_per_step():
    section = KernelPooling(stride=2)
    assert kernel_settings(section) is kernel_settings(KernelPooling(stride=2))  # a step pays a lookup
    section.window = 3  # a section changed in place is read again
    assert kernel_settings(section) == KernelSettings(window=3, stride=2)
