"""The benchmark code runs: the CUDA benchmarks' functions on the CPU with tiny models, and the runner."""

import json

import torch

from benchmarks import bench_gpu
from benchmarks.run import main as run_benchmarks


def test_gpu_benchmark_functions_run_on_cpu(tiny_synthetic):
    cpu = torch.device("cpu")
    training = bench_gpu.rating_training(
        str(tiny_synthetic),
        device=cpu,
        backbone="test_resnet",
        image_size=32,
        batch_size=2,
        steps=2,
        warmup=1,
        num_workers=0,
        fp16=False,
    )
    assert training["model_only_images_per_s"] > 0 and training["end_to_end_images_per_s"] > 0
    assert 0 < training["end_to_end_fraction_of_model_only"]
    vit = bench_gpu.vit_features(device=cpu, encoder="test_vit", batch_size=2, steps=2, fp16=False)
    assert vit["images_per_s"] > 0
    decoder = bench_gpu.caption_decoder(
        device=cpu, encoder="test_vit", batch_size=2, seq_len=4, steps=2, fp16=False
    )
    assert decoder["tokens_per_s"] > 0


def test_runner_reports_skips_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = run_benchmarks(["--quick", "--only", "bench_gpu", "--output", str(out)])
    results = json.loads(out.read_text())["results"]
    if torch.cuda.is_available():
        assert code == 0 and all("error" not in r for r in results)
    else:
        assert code == 0 and results[0]["skipped"] == "not supported on this machine"
    assert "bench_gpu" in capsys.readouterr().out
