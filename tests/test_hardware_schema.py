"""Every hardware table: registered, documented with units, written and read back, joinable to points/components."""

import time

import pandas as pd
import pyarrow as pa
import pytest
from support.hardware_fakes import FakeClock, FakeDevice

from mambaprof.collectors.energy import EnergyCollector, EnergyMeter
from mambaprof.collectors.io import PhaseIO
from mambaprof.collectors.ncu import attribute_ncu, parse_ncu_csv
from mambaprof.collectors.nvml import NvmlRunCollector, NvmlSampler
from mambaprof.collectors.rows import status_row
from mambaprof.storage.rundir import RunWriter, read_table
from mambaprof.storage.schema import TABLES, get_table
from mambaprof.storage.schema.core import identity_columns

HW_TABLES = ("nvml_samples", "energy", "memory", "memory_points", "io", "hw_counters", "collector_status")
UNIT_SUFFIX = {"_bytes": "bytes", "_ms": "ms", "_us": "us", "_ns": "ns", "_w": "W", "_mj": "mJ", "_pct": "%",
               "_j": "J", "_mhz": "MHz", "_c": "degC", "_bytes_per_s": "bytes/s"}


@pytest.mark.parametrize("name", HW_TABLES)
def test_table_registered_documented_and_keyed(name):
    table = get_table(name)
    assert name in TABLES and table.doc and table.key
    ident = [c.name for c in identity_columns(per_point=name != "collector_status")]
    assert table.column_names[:len(ident)] == ident
    for key in table.key:
        assert key in table.column_names, (name, key)
    for col in table.columns:
        assert col.doc, (name, col.name)
        for suffix in sorted(UNIT_SUFFIX, key=len, reverse=True):
            if col.name.endswith(suffix):
                assert col.unit == UNIT_SUFFIX[suffix], (name, col.name, col.unit)
                break
    if name in ("energy", "memory", "hw_counters"):
        assert {"layer", "component"} <= set(table.column_names)


BASE = {"rank": 0, "world_size": 1, "point_id": 0, "device": "cuda:0", "batch": 8, "seqlen": 4096,
        "dtype": "bfloat16"}


def _rows(run_id):
    """One realistic row per table, produced by the collectors' own code paths."""
    base = {"run_id": run_id, **BASE}
    sampler = NvmlSampler(FakeDevice(), interval_ms=2.0)
    rc = NvmlRunCollector(sampler)
    rc.start_run(run_id, {"rank": 0, "world_size": 1})
    rc.begin_point(0)
    time.sleep(0.03)
    samples = rc.end_point(base)["nvml_samples"]
    status = rc.stop_run()["collector_status"]
    clock = FakeClock()
    meter = EnergyMeter(FakeDevice(update_ms=10.0, clock=clock).energy_mj, 10.0, clock=clock)

    def run(n):
        clock.advance_ms(n * 2.0)
        return n * 2.0

    reading = meter.measure(run, 60, lambda: None)
    energy = [EnergyCollector(FakeDevice())._row(base, (3, "ssm_scan"), "component", reading, 60.0, 8 * 4096, 48,
                                                 "pass", "note"),
              EnergyCollector(FakeDevice())._row(base, (3, "conv1d"), "component", None, None, 8 * 4096, 48, None,
                                                 None, status="capture_failed", reason="RuntimeError: x")]
    io = PhaseIO()
    memory = [{**base, "layer": 3, "component": "ssm_scan", "source": "cuda_allocator", "windows": 1,
               "alloc_delta_bytes": 1 << 20, "peak_delta_bytes": 3 << 20, "allocated_at_start_bytes": 5 << 30,
               "cache_state_bytes": 8 * 4096 * 16 * 2}]
    points = [{**base, "source": "cuda_allocator", "weights_bytes": 2_800_000_000, "peak_allocated_bytes": 9 << 30}]
    ios = [{**base, "phase": "upload", "phase_ms": 0.2, "h2d_bytes": io.h2d_bytes, "h2d_count": io.h2d_count}]
    kernels = parse_ncu_csv('"ID","Kernel Name","Metric Name","Metric Unit","Metric Value"\n'
                            '"0","gemm","dram__bytes_read.sum","byte","100"\n')
    counters = [{**base, **r} for r in attribute_ncu(kernels, {0: "mambaprof/L3/in_proj"}, {}, set())]
    status.append(status_row(base, "energy", "partial", "not resolved: 3/conv1d", {"a": 1}, point_id=0))
    return {"nvml_samples": samples, "energy": energy, "memory": memory, "memory_points": points, "io": ios,
            "hw_counters": counters, "collector_status": status}


def test_rows_round_trip_and_join_to_components(tmp_path):
    w = RunWriter(tmp_path / "run")
    w.prepare()
    rows = _rows(w.run_id)
    for table, table_rows in rows.items():
        assert table_rows, table
        w.write_rows(table, table_rows, None if table == "collector_status" else 0)
    w.write_rows("components", [{"run_id": w.run_id, **BASE, "layer": 3, "component": c, "bytes_min": 1e6}
                                for c in ("in_proj", "conv1d", "ssm_scan")], 0)
    w.write_rows("points", [{"run_id": w.run_id, **BASE, "status": "ok"}], 0)
    back = {t: read_table(tmp_path / "run", t).to_pandas() for t in rows}
    for table, frame in back.items():
        assert len(frame) == len(rows[table]), table
        assert read_table(tmp_path / "run", table).schema.equals(get_table(table).arrow_schema(), check_metadata=False)
    samples = back["nvml_samples"]
    assert (samples.power_w == 100.0).all() and samples.host_ns.is_monotonic_increasing
    comps = read_table(tmp_path / "run", "components").to_pandas()
    keys = ["run_id", "rank", "point_id", "layer", "component"]
    joined = comps.merge(back["energy"], on=keys, how="left", suffixes=("", "_e"))
    scan = joined[joined.component == "ssm_scan"].iloc[0]
    assert scan.status == "resolved" and scan.energy_mj == pytest.approx(200.0, rel=0.1)
    assert joined[joined.component == "conv1d"].iloc[0].status == "capture_failed"
    assert pd.isna(joined[joined.component == "in_proj"].iloc[0].status)
    assert comps.merge(back["hw_counters"], on=keys).dram_read_bytes.tolist() == [100.0]
    assert comps.merge(back["memory"], on=keys).cache_state_bytes.tolist() == [8 * 4096 * 16 * 2]
    points = read_table(tmp_path / "run", "points").to_pandas()
    for table in ("memory_points", "io", "nvml_samples"):
        assert len(points.merge(back[table], on=["run_id", "rank", "point_id"])) == len(rows[table])


def test_unknown_column_is_refused():
    with pytest.raises(KeyError, match="no column"):
        get_table("energy").build([{"run_id": "r", "rank": 0, "world_size": 1, "point_id": 0, "layer": 0,
                                    "component": "x", "joules": 1.0}])
    assert get_table("nvml_samples").arrow_schema().field("energy_mj").type == pa.int64()
