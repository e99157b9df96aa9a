"""The what-if's failure handling: an OOM at one sequence length is recorded and the rest goes on; a crash
still leaves every evaluated variant's accuracy on disk."""

import pytest
import torch
from support.models import tiny_mamba

from mambaprof.model.loading import LoadedModel
from mambaprof.pruning import whatif
from mambaprof.pruning.whatif import PruneConfig, run_whatif
from mambaprof.storage.rundir import RunWriter, read_run_record, read_table


def _config(**kw):
    return PruneConfig(ratios=[0, 0.5], scores=["magnitude"], seqlens=[16, 32], device=torch.device("cpu"),
                       dtype=torch.float32, calib_tokens=512, calib_seqlen=32, eval_tokens=512, eval_seqlen=32,
                       task_episodes=4, repeats=1, warmup=0, decode_steps=2, profile_repeats=0, **kw)


def _loaded():
    return LoadedModel(tiny_mamba(layers=1, d_model=32), "file", "tiny")


def test_oom_at_one_seqlen_is_recorded(tmp_path, monkeypatch):
    real = whatif.interleaved_prefill

    def fake(models, ids, *args):
        if ids.shape[1] > 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return real(models, ids, *args)

    monkeypatch.setattr(whatif, "interleaved_prefill", fake)
    result = run_whatif(_loaded(), _config(), RunWriter(tmp_path / "run"))
    assert result.status == "incomplete" and "prefill L=32" in result.reason
    df = read_table(tmp_path / "run", "pruning").to_pandas().set_index(["variant_id", "seqlen"])
    assert df.loc[(1, 16), "prefill_ms_median"] > 0 and pd_isna(df.loc[(1, 32), "prefill_ms_median"])
    assert "out of memory" in df.loc[(1, 32), "note"]
    assert df.loc[(1, 32), "perplexity"] > 1  # accuracy is independent of the failed timing
    assert read_run_record(tmp_path / "run")["status"] == "incomplete"


def test_crash_during_timing_keeps_accuracy_rows(tmp_path, monkeypatch):
    def boom(*args):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(whatif, "interleaved_prefill", boom)
    with pytest.raises(RuntimeError, match="kernel exploded"):
        run_whatif(_loaded(), _config(), RunWriter(tmp_path / "run"))
    df = read_table(tmp_path / "run", "pruning").to_pandas()
    assert sorted(set(df.variant_id)) == [0, 1] and (df.perplexity > 1).all()
    assert df.prefill_ms_median.isna().all()
    record = read_run_record(tmp_path / "run")
    assert record["status"] == "failed" and "kernel exploded" in record["status_reason"]


def pd_isna(value):
    return value is None or value != value


def test_disk_full_is_a_one_line_storage_error(tmp_path, monkeypatch):
    import errno

    from mambaprof.errors import StorageError

    writer = RunWriter(tmp_path / "run")
    real = writer.write_rows

    def full(table, rows, point_id, suffix=""):
        if table == "pruning" and point_id == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, rows, point_id, suffix)

    monkeypatch.setattr(writer, "write_rows", full)
    with pytest.raises(StorageError, match="No space left on device") as exc:
        run_whatif(_loaded(), _config(), writer)
    assert "\n" not in exc.value.one_line() and "finished variants stay readable" in exc.value.one_line()
    df = read_table(tmp_path / "run", "pruning").to_pandas()
    assert set(df.variant_id) == {0}  # the variant written before the disk filled is intact
    assert read_run_record(tmp_path / "run")["status"] == "failed"


def test_timed_variants_are_retuned_at_the_largest_prefill_shape(tmp_path, monkeypatch):
    # a fake Triton autotuner (key without batch or seqlen, per d_state like mamba_ssm's SSD kernels) that every
    # forward launches: the unpruned model first tunes it during calibration, a pruned one during its perplexity
    # pass; the what-if must retune every key at the largest prefill shape before timing
    import json
    import sys
    import types

    class Autotuner:
        def __init__(self):
            self.cache, self.configs, self.fn = {}, ["a", "b"], lambda: None
            self.tunes = []

        def run(self, batch, seqlen, d_state):
            if d_state not in self.cache:
                self.tunes.append((batch, seqlen, d_state))
                self.cache[d_state] = f"TUNED_AT: {batch}x{seqlen}"

    tuner = Autotuner()
    module = types.ModuleType("mamba_ssm._fake_whatif_kernels")
    module._ssd_kernel = tuner
    monkeypatch.setitem(sys.modules, module.__name__, module)
    from mambaprof import autotune  # it scans only where triton is imported (not on CPU machines)

    monkeypatch.setattr(autotune, "triton_loaded", lambda: True)
    loaded = _loaded()

    def launch(mod, args, out):  # a forward hook survives the variants' deepcopy and calls the one kernel
        hidden = args[0]
        tuner.run(int(hidden.shape[0]), int(hidden.shape[1]), int(mod.A_log.shape[-1]))  # A_log: (d_inner, d_state)

    for layer in loaded.model.backbone.layers:
        layer.mixer.register_forward_hook(launch)
    config = PruneConfig(ratios=[0, 0.5], scores=["magnitude"], seqlens=[16, 48], device=torch.device("cpu"),
                         dtype=torch.float32, calib_tokens=512, calib_seqlen=32, eval_tokens=512, eval_seqlen=32,
                         task_episodes=4, repeats=1, warmup=0, decode_steps=2, profile_repeats=0)
    run_whatif(loaded, config, RunWriter(tmp_path / "run"))
    tuned = dict(tuner.cache)
    assert set(tuned) == {4, 8}  # tiny_mamba's d_state 8, pruned to 4 at ratio 0.5
    assert all(cfg == "TUNED_AT: 1x48" for cfg in tuned.values()), tuned  # batch 1 x the largest seqlen
    # before the retune each state size had been tuned at the first shape that ran it (calibration, perplexity)
    assert {t[2] for t in tuner.tunes[:2]} == {8, 4} and all(t[1] == 32 for t in tuner.tunes[:2])
    record = json.loads(read_run_record(tmp_path / "run")["autotune_json"])
    assert record["policy"] == "largest" and record["tuned_at"] == {"batch": 1, "seqlen": 48}
    assert sorted(c["config"] for c in record["configs"]) == ["TUNED_AT: 1x48", "TUNED_AT: 1x48"]
