from pathlib import Path

import pyarrow as pa
import pytest

from mambaprof import taxonomy
from mambaprof.storage.schema import SCHEMA_VERSION, TABLES, get_table, render_markdown

REPO = Path(__file__).resolve().parents[1]


def test_taxonomy_is_one_table_with_unique_names():
    names = [c.name for c in taxonomy.COMPONENTS]
    assert len(names) == len(set(names))
    assert names[:6] == ["in_proj", "conv1d", "ssm_params", "ssm_scan", "gating", "out_proj"]
    assert set(taxonomy.MIXER_COMPONENTS) == set(names[:6])
    assert taxonomy.validate_component("ssm_scan") == "ssm_scan"
    with pytest.raises(ValueError, match="in_proj"):
        taxonomy.validate_component("scan")


def test_core_tables_registered_with_units_in_names():
    for name in ("runs", "points", "components", "kernels"):
        assert name in TABLES
    comp = get_table("components")
    assert {"wall_ms_median", "kernel_ms_median", "flops", "bytes_min"} <= set(comp.column_names)
    for table in TABLES.values():
        for col in table.columns:
            assert col.doc, f"{table.name}.{col.name} has no doc"
            if col.name.endswith("_ms") or "_ms_" in col.name:
                assert col.unit == "ms", (table.name, col.name)


def test_build_rejects_unknown_and_missing_required():
    table = get_table("points")
    with pytest.raises(KeyError, match="no column"):
        table.build([{"run_id": "r", "rank": 0, "world_size": 1, "point_id": 0, "bogus": 1}])
    with pytest.raises(ValueError, match="may not be null"):
        table.build([{"rank": 0, "world_size": 1, "point_id": 0}])
    built = table.build([{"run_id": "r", "rank": 0, "world_size": 1, "point_id": 3, "seqlen": 64}])
    assert built.num_rows == 1 and built.column("seqlen").to_pylist() == [64]
    assert built.schema.metadata[b"mambaprof.schema_version"] == str(SCHEMA_VERSION).encode()
    assert built.schema.field("seqlen").type == pa.int32()


def test_schema_doc_is_in_sync():
    doc = (REPO / "docs" / "SCHEMA.md").read_text()
    assert doc == render_markdown(), (
        "docs/SCHEMA.md is stale: run `python -m mambaprof.storage.schema > docs/SCHEMA.md`")
