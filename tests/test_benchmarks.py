"""The benchmark code runs: the CUDA benchmarks' functions on the CPU with tiny models, and the runner."""

import json
import re

import pytest
import torch

from benchmarks import bench_app, bench_gpu
from benchmarks.run import main as run_benchmarks

from .conftest import REPO_ROOT


def test_gpu_benchmark_runs_on_cpu_with_tiny_models():
    """`measure` is what `run()` calls on a CUDA machine: the same code, here on the CPU."""
    training, vit, decoder, half = bench_gpu.measure(torch.device("cpu"), tiny=True)
    assert half["dtype"] == "torch.bfloat16" and half["ratings_finite"]
    assert half["caption_beam3_all_strings"] and half["caption_beam3_no_repeat_2_all_strings"]
    assert training["model_only_images_per_s"] > 0 and training["end_to_end_images_per_s"] > 0
    assert training["end_to_end_normalised_in_workers_images_per_s"] > 0
    assert 0 < training["end_to_end_fraction_of_model_only"]
    assert vit["images_per_s"] > 0 and decoder["tokens_per_s"] > 0
    assert all(r["machine"]["cpu_cores"] >= 1 for r in (training, vit, decoder))


def test_runner_reports_skips_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = run_benchmarks(["--quick", "--only", "bench_gpu", "--output", str(out)])
    results = json.loads(out.read_text())["results"]
    if torch.cuda.is_available():
        assert code == 0 and all("error" not in r for r in results)
    else:
        assert code == 0 and results[0]["skipped"] == "not supported on this machine"
    assert "bench_gpu" in capsys.readouterr().out


def test_app_benchmark_looks_where_make_demo_writes_its_models():
    makefile = (REPO_ROOT / "Makefile").read_text()
    out = re.search(r"^OUT \?= (\S+)$", makefile, re.MULTILINE).group(1)
    written = re.findall(r"python train_(\w+)\.py .*?--output_dir \$\(OUT\)/(\S+)", makefile)
    assert {task: REPO_ROOT / out / folder for task, folder in written} == bench_app.DEMO_MODELS


@pytest.mark.slow
def test_bf16_benchmark_measures_both_precisions_side_by_side():
    from benchmarks import bench_bf16

    result = bench_bf16.run(quick=True)
    assert set(result["bf16_over_fp32"]) == {
        "matmul", "feature_extraction", "feature_extraction_vit_small", "decoder_train_step",
        "greedy_generation", "rating_train_step", "app_single_photo",
    }  # fmt: skip
    assert all(ratio > 0 for ratio in result["bf16_over_fp32"].values())
    assert result["feature_extraction_lite0_128px"]["min_cosine_bf16_vs_fp32"] > 0.98
    assert isinstance(result["cpu_bf16_flags"], list)


@pytest.mark.slow
def test_peer_benchmark_quick_mode_trains_and_times_all_three():
    from benchmarks import bench_peers

    result = bench_peers.run(quick=True)
    models = result["models"]
    assert set(models) == {"ours_attention", "ours_pooled", "peer_gpt2", "retrieval"}
    for name in ("ours_attention", "ours_pooled", "peer_gpt2"):
        m = models[name]
        assert len(m["test_bleu_beam3"]["per_seed"]) == 2 and m["train_seconds_per_epoch"] > 0
        assert len(m["throughput"]) == 8 and all(
            t["captions_per_s"] > 0 for t in m["throughput"].values()
        )
        assert m["flops_per_token"] > 0 and 0 < m["fraction_of_matmul_peak_2threads_greedy_batch64"]
    assert 0 <= models["retrieval"]["test_bleu"] <= 100
    assert "skipped" in bench_peers.run(quick=False)  # the full run only when asked by name


@pytest.mark.slow
def test_peer_benchmark_runs_a_subset_of_the_decoders(tmp_path):
    from benchmarks import bench_peers

    result = bench_peers.measure(
        bench_peers.quick_data(tmp_path), bench_peers.QUICK, seeds=[0], precision="no",
        peer_lrs=[5e-3], rows=2, runs_dir=tmp_path / "runs", rounds=1, steps=1, matmul_size=64,
        names=("ours_pooled", "peer_gpt2"),
    )  # fmt: skip
    assert set(result["models"]) == {"ours_pooled", "peer_gpt2", "retrieval"}
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "ours_pooled_lr0.005_seed0", "peer_gpt2_lr0.005_seed0"
    ]  # fmt: skip
    text = bench_peers.table(result)
    assert "| pooled / peer |" in text and "attention" not in text


def test_generated_tokens_stop_at_the_first_eos_whatever_fills_the_row():
    from benchmarks.bench_peers import generated_tokens

    bos, eos, pad = 1, 2, 0
    ours = torch.tensor([[bos, 5, 6, eos, pad, pad], [bos, 5, 6, 7, 8, 9]])  # ended; cut at max
    peer = torch.tensor([[bos, 5, 6, eos, eos, eos], [bos, 5, eos, eos, eos, eos]])  # beam search
    assert generated_tokens(ours, eos) == 3 + 5 and generated_tokens(peer, eos) == 3 + 2


def test_peer_benchmark_reuses_a_finished_training(tmp_path):
    from benchmarks import bench_peers

    job = {"name": "peer_gpt2", "lr": 1e-3, "seed": 0, "recipe": bench_peers.QUICK,
           "precision": "no", "runs_dir": str(tmp_path)}  # fmt: skip
    done = {"name": "peer_gpt2", "lr": 1e-3, "seed": 0, "test_bleu_beam3": 12.5}
    (tmp_path / "peer_gpt2_lr0.001_seed0").mkdir()
    (tmp_path / "peer_gpt2_lr0.001_seed0" / "result.json").write_text(json.dumps(done))
    assert bench_peers.train_one(job, data=None) == done  # no data needed: nothing is trained


@pytest.mark.slow
def test_predict_benchmark_times_predict_py_and_the_models_alone(tmp_path):
    import pyarrow.parquet as pq
    from PIL import Image

    from benchmarks import bench_predict
    from benchmarks.random_models import save_random_models

    models = {task: str(f) for task, f in save_random_models(tmp_path / "models").items()}
    images = tmp_path / "photos" / "shop"
    images.mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (60, 80), (40 * i, 90, 200)).save(images / f"{i}.jpg")
    photos = tmp_path / "photos.csv"
    assert bench_predict.photo_csv(tmp_path / "photos", 4, photos) == 4

    run = bench_predict.end_to_end(photos, models, tmp_path / "out.parquet", 1, 2, 1)
    assert run["photos"] == 4 and run["images_per_second"] > 0
    assert pq.read_table(tmp_path / "out.parquet").column("error").null_count == 4

    loaded = {
        t: bench_predict.predict.load_model(t, f, torch.device("cpu")) for t, f in models.items()
    }
    batches = bench_predict.decoded_batches(photos, loaded, batch_size=3)
    assert [len(b["positions"]) for b in batches] == [3, 1]
    alone = bench_predict.models_alone(loaded, batches, num_beams=1)
    assert alone["photos"] == 4 and alone["images_per_second"] > 0


def test_generation_benchmark_times_both_engines_on_the_same_captions():
    from benchmarks import bench_generate

    result = bench_generate.run(quick=True)
    cells = result["catalog_shaped_16_tokens"]
    assert set(cells) == {f"fp32_beams{k}_batch{b}" for k in (1, 3) for b in (64, 1)}
    for cell in cells.values():
        assert cell["fast_captions_per_s"] > 0 and cell["mixin_captions_per_s"] > 0
        assert cell["same_captions"] == "8/8"


@pytest.mark.slow
def test_cache_engines_benchmark_matches_eager_features_on_every_installed_engine(tmp_path):
    import subprocess
    import sys

    from benchmarks import bench_cache_engines as bench

    # in a process of its own: OpenVINO's and inductor's thread pools in this one crash later
    # tests that fork (DataLoader workers)
    output = tmp_path / "engines.json"
    subprocess.run(
        [sys.executable, "benchmarks/bench_cache_engines.py", "--quick", "--output", str(output)],
        cwd=REPO_ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    result = json.loads(output.read_text())
    engines = {cell["engine"] for cell in result["cells"]}
    assert {"eager_fp32", "eager_bf16", "compile_fp32", "compile_bf16"} <= engines
    for optional, module in (("onnxruntime_fp32", "onnxruntime"), ("openvino_fp32", "openvino"),
                             ("openvino_bf16", "openvino")):  # fmt: skip
        assert (optional in engines) == bench.installed(module) or optional in result["skipped"]
    bf16 = result["eager_bf16_vs_eager_fp32"]
    assert bf16["min_cosine"] > 0.99
    for cell in result["cells"]:
        assert cell["images_per_s"] > 0 and cell["vs_eager_bf16"] > 0
        if cell["precision"] == "fp32":  # the same arithmetic reordered: equal to rounding
            assert cell["within_tolerance"], cell
        else:  # bf16 engines round elsewhere than eager bf16 does: judged, not required
            assert cell["vs_eager_fp32"]["min_cosine"] > 0.95, cell
