"""Kernel attribution rules, including the GPU branch (device activities linked to CPU launches),
exercised with synthetic events so it runs on the CPU."""

from types import SimpleNamespace

from torch.autograd import DeviceType

from mambaprof.collectors.kernel_rules import attribute_mixer_kernels
from mambaprof.collectors.profiler import DeviceEvent, Recording, attribute, component_stats, forward_totals


def cpu_event(eid, name, start, end, parent=None):
    ev = SimpleNamespace(id=eid, name=name, device_type=DeviceType.CPU, cpu_parent=parent, cpu_children=[],
                         is_user_annotation=name.startswith("mambaprof/"),
                         time_range=SimpleNamespace(start=start, end=end, elapsed_us=lambda: end - start),
                         self_cpu_time_total=end - start)
    if parent is not None:
        parent.cpu_children.append(ev)
    return ev


def test_gpu_branch_places_kernels_by_launch_time_and_link():
    fwd = cpu_event(1, "mambaprof/model/forward", 0, 1000)
    block = cpu_event(2, "mambaprof/L0/block", 10, 900, fwd)
    scan = cpu_event(3, "mambaprof/L0/ssm_scan", 100, 200, block)
    mm = cpu_event(4, "aten::mm", 300, 310, block)  # in the block, outside any component
    head = cpu_event(5, "mambaprof/model/lm_head", 910, 990, fwd)
    linear = cpu_event(6, "aten::linear", 915, 985, head)
    loose = cpu_event(7, "aten::add", 995, 999, fwd)
    outside = cpu_event(8, "aten::copy_", 2000, 2010)
    dev = [
        # launched from a C++ extension inside the ssm_scan range: no op link, placed by launch time
        DeviceEvent("selective_scan_fwd_kernel", 0, 450, 40.0, linked_id=0, launch_us=150),
        DeviceEvent("vectorized_elementwise_kernel", 0, 520, 5.0, linked_id=4, launch_us=305),
        DeviceEvent("nvjet_hsh_gemm", 0, 930, 50.0, linked_id=6, launch_us=None),  # link only
        DeviceEvent("elementwise_add", 0, 996, 1.0, linked_id=7, launch_us=996),
        DeviceEvent("Memcpy DtoH", 0, 2005, 3.0, linked_id=8, launch_us=2004),  # not in a forward: dropped
        # nothing links it: kept as unattributed time of the forward it ran in
        DeviceEvent("orphan", 0, 600, 2.0, linked_id=0, launch_us=None),
    ]
    rows = attribute(Recording([fwd, block, scan, mm, head, linear, loose, outside], dev), {0: "mamba1"}, {0})
    got = {r.name: (r.layer, r.component, r.attribution) for r in rows}
    assert got == {
        "selective_scan_fwd_kernel": (0, "ssm_scan", "range"),
        "vectorized_elementwise_kernel": (0, "norm", "range"),  # fused add+norm block leftover
        "nvjet_hsh_gemm": (-1, "lm_head", "range"),
        "elementwise_add": (-1, "other", "none"),
        "orphan": (-1, "other", "none"),
    }
    assert [r.seq for r in rows] == [0, 1, 2, 3, 4] and all(r.device_type == "cuda" for r in rows)
    total, pct, count = forward_totals(rows, 1)
    assert total == (40 + 5 + 2 + 50 + 1) / 1000 and count == 5
    assert pct == 100 * 95 / 98
    stats = component_stats(rows, 1)
    assert stats[(0, "ssm_scan")].median_ms == 0.04


def test_unsplit_mixer_kernels_follow_name_rules_in_launch_order():
    fwd = cpu_event(1, "mambaprof/model/forward", 0, 1000)
    mixer = cpu_event(2, "mambaprof/L0/mixer", 10, 900, fwd)
    launch = cpu_event(3, "MambaInnerFn", 20, 800, mixer)
    names = ["sm90_xmma_gemm_bf16", "causal_conv1d_fwd_kernel", "sm90_xmma_gemm_bf16", "nvjet_gemm",
             "elementwise_kernel", "selective_scan_fwd_kernel", "sm90_xmma_gemm_bf16"]
    dev = [DeviceEvent(n, 0, 100 + 10 * i, 1.0, linked_id=0, launch_us=30 + i) for i, n in enumerate(names)]
    rows = attribute(Recording([fwd, mixer, launch], dev), {0: "mamba1"}, set())
    assert [r.component for r in rows] == ["in_proj", "conv1d", "ssm_params", "ssm_params", "ssm_params",
                                           "ssm_scan", "out_proj"]
    assert {r.attribution for r in rows} == {"name_rule"}


def test_mamba2_name_rules():
    names = ["gemm", "causal_conv1d_fwd_kernel", "_chunk_cumsum_fwd_kernel", "_chunk_state_fwd_kernel",
             "_state_passing_fwd_kernel", "_bmm_chunk_fwd_kernel", "_chunk_scan_fwd_kernel",
             "_layer_norm_fwd_1pass_kernel", "gemm"]
    assert attribute_mixer_kernels(names, "mamba2") == [
        "in_proj", "conv1d", "ssm_scan", "ssm_scan", "ssm_scan", "ssm_scan", "ssm_scan", "gating", "out_proj"]


class FakeKinetoEvent:
    def __init__(self, name, activity="kernel", user=False):
        self._name, self._activity, self._user = name, activity, user

    def name(self):
        return self._name

    def activity_type(self):
        return self._activity

    def is_user_annotation(self):
        return self._user

    def is_hidden_event(self):
        return False


def test_gpu_copies_of_annotations_are_not_device_activities():
    from mambaprof.collectors.profiler import is_device_activity

    assert is_device_activity(FakeKinetoEvent("selective_scan_fwd_kernel"))
    assert is_device_activity(FakeKinetoEvent("Memcpy HtoD (Pageable -> Device)", "gpu_memcpy"))
    assert not is_device_activity(FakeKinetoEvent("mambaprof/L0/ssm_scan", "gpu_user_annotation"))
    assert not is_device_activity(FakeKinetoEvent("mambaprof/L0/ssm_scan", "kernel"))  # by name too
    assert not is_device_activity(FakeKinetoEvent("ProfilerStep#3", "gpu_user_annotation"))
    assert not is_device_activity(FakeKinetoEvent("my_range", "kernel", user=True))
