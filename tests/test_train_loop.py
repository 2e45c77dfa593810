"""The resumable step loop (codec/train_loop.py), the learning-rate schedule (codec/schedule.py)
and training under MultiWorkerMirroredStrategy with two real worker processes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from codec.schedule import WarmupCosine, learning_rate

ROOT = Path(__file__).resolve().parents[1]

# A tiny model trained on random images, in a fresh process: writes its final variables (model
# and both optimizers) to OUT/variables.npz. KILL_AT: SIGKILL itself (kill -9: no clean-up) when
# that step's probe runs, i.e. after the step before it was checkpointed.
TINY_RUN = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from codec.models.bls2017_train import ImageTrainConfig, train_image_codec
out, steps, kill_at, deadline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (40 + 8 * i, 56, 3)).astype(np.uint8) for i in range(3)]
config = ImageTrainConfig(filters=8, patch_size=32, batch_size=2, steps=steps, schedule="cosine",
                          warmup_steps=3, learning_rate=1e-3, checkpoint_minutes=0,
                          log_seconds=0, verbose=1, seed=3)
def probe(trainer):
    step = int(trainer.optimizer.iterations.numpy())
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return {{"step_seen": step}}
import codec.models.bls2017_train as module
module.kodak_probe = lambda images, config: probe
summary = train_image_codec(config, out, images=images, probe_images=images[:1],
                            probe_every_steps=1, deadline=deadline or None)
if summary["finished"]:
    from codec.models.bls2017_train import build_image_trainer
    import tensorflow as tf
    trainer = build_image_trainer(config)
    from codec.train_loop import build_optimizers
    build_optimizers(trainer)
    tf.train.Checkpoint(trainer=trainer, optimizer=trainer.optimizer,
                        prior_optimizer=trainer.prior_optimizer).restore(
        tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))).assert_consumed()
    variables = trainer.variables + trainer.optimizer.variables + \\
        trainer.prior_optimizer.variables
    np.savez(os.path.join(out, "variables.npz"), *[v.numpy() for v in variables])
print("finished" if summary["finished"] else "stopped", summary["steps"])
"""


def _tiny_run(out: Path, steps: int, kill_at: int = 0, deadline: float = 0.) -> \
        subprocess.CompletedProcess:
    script = out.parent / "tiny_run.py"
    script.write_text(TINY_RUN.format(root=str(ROOT)))
    return subprocess.run([sys.executable, str(script), str(out), str(steps), str(kill_at),
                           str(deadline)], capture_output=True, text=True, timeout=300)


def _variables(out: Path) -> list[np.ndarray]:
    with np.load(out / "variables.npz") as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def test_warmup_cosine_schedule():
    schedule = WarmupCosine(1e-3, total_steps=1000, warmup_steps=100, final_fraction=.01)
    rates = np.array([float(schedule(step)) for step in range(0, 1200)])
    assert rates[0] == pytest.approx(1e-5)                     # (0 + 1) / 100 of the peak
    assert rates[49] == pytest.approx(5e-4)
    assert rates[99] == pytest.approx(1e-3) and rates.max() == pytest.approx(1e-3)
    assert np.all(np.diff(rates[:100]) > 0) and np.all(np.diff(rates[100:1000]) < 0)
    assert rates[550] == pytest.approx(.5 * (1e-3 + 1e-5), rel=1e-3)   # half-way of the cosine
    assert rates[1000] == pytest.approx(1e-5) and rates[1199] == pytest.approx(1e-5)
    assert learning_rate("constant", 2e-4, 1000) == 2e-4
    with pytest.raises(ValueError, match="schedule must be one of"):
        learning_rate("linear", 2e-4, 1000)
    with pytest.raises(ValueError):
        WarmupCosine(1e-3, total_steps=100, warmup_steps=100)


def test_a_killed_run_resumes_exactly_where_an_uninterrupted_run_goes(tmp_path):
    """kill -9 in the middle of step 6 (after step 5's checkpoint), resume, and the weights,
    Adam's moments and step counters, hence the schedule, equal an uninterrupted run's."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run = _tiny_run(whole, 9)
    assert run.returncode == 0, run.stderr[-3000:]
    first = _tiny_run(killed, 9, kill_at=6)
    assert first.returncode == -9                                  # really killed
    assert "ckpt-5.index" in os.listdir(killed / "checkpoints")
    assert not (killed / "saved_model").exists()
    second = _tiny_run(killed, 9)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming at step 5 of 9" in second.stdout
    a, b = _variables(whole), _variables(killed)
    assert len(a) == len(b) > 20
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # The logs were cut back to the checkpoint: each step is logged once.
    steps = [json.loads(line)["step"] for line in
             (killed / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 10))
    assert [p["step"] for p in json.loads((killed / "learning_curve.json").read_text())] == \
        list(range(1, 10))
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["finished"] and summary["steps"] == 9
    assert (killed / "saved_model" / "saved_model.pb").is_file()


def test_a_deadline_checkpoints_and_stops_then_the_run_continues(tmp_path):
    out = tmp_path / "run"
    stopped = _tiny_run(out, 6, deadline=time.time() - 1)
    assert stopped.returncode == 0 and "stopped 1" in stopped.stdout
    assert "stopped (deadline) at step 1" in stopped.stdout
    assert not (out / "summary.json").exists()
    resumed = _tiny_run(out, 6)
    assert "resuming at step 1 of 6" in resumed.stdout and "finished 6" in resumed.stdout


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


MULTI_WORKER = """
import json, os, sys
sys.path.insert(0, {root!r})
import numpy as np, tensorflow as tf
from codec.models.bls2017_train import (ImageTrainConfig, build_image_trainer,
                                        distribution_strategy)
from codec.data.crops import CropSampler
from codec.train_loop import train_steps
strategy = distribution_strategy()
print("strategy", type(strategy).__name__, strategy.num_replicas_in_sync, flush=True)
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (48, 64, 3)).astype(np.uint8) for _ in range(3)]
config = ImageTrainConfig(filters=8, patch_size=32, batch_size=4, steps=4, schedule="cosine",
                          warmup_steps=1, learning_rate=1e-3, seed=5, checkpoint_minutes=1e9)
import tf_keras as keras
keras.utils.set_random_seed(5)
with strategy.scope():
    trainer = build_image_trainer(config)
initial = [v.numpy() for v in trainer.trainable_variables]
sampler = CropSampler(images, 32)
train_steps(trainer, lambda step, size: sampler.batch(5, step, size), sys.argv[1],
            total_steps=4, global_batch=4, seed=5, verbose=False)
np.savez(sys.argv[2], *[v.numpy() for v in trainer.trainable_variables])
moved = sum(float(np.abs(v.numpy() - i).max()) > 0 for v, i in zip(trainer.trainable_variables,
                                                                  initial))
print("variables moved by training:", moved, "of", len(initial), flush=True)
"""


@pytest.mark.slow
def test_multi_worker_training_equals_one_process_with_the_same_global_batch(tmp_path):
    """Two workers on loopback ports (TF_CONFIG), each with half of every global batch of 4,
    end with identical variables, equal to one process training on the whole batch."""
    script = tmp_path / "worker.py"
    script.write_text(MULTI_WORKER.format(root=str(ROOT)))
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    workers = []
    for index in range(2):
        worker_env = {**env, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / f"w{index}"),
             str(tmp_path / f"w{index}.npz")], env=worker_env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single"),
                             str(tmp_path / "single.npz")], env=env, capture_output=True,
                            text=True, timeout=300)
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
        assert "strategy CollectiveAllReduceStrategy 2" in stdout   # MultiWorkerMirrored's class
    assert single.returncode == 0, single.stderr[-3000:]
    assert "strategy _DefaultDistributionStrategy 1" in single.stdout
    load = lambda name: [a for _, a in sorted(np.load(tmp_path / name).items(),
                                              key=lambda kv: int(kv[0].split("_")[1]))]
    w0, w1, one = load("w0.npz"), load("w1.npz"), load("single.npz")
    for a, b, c in zip(w0, w1, one):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)
    moved = int(single.stdout.split("variables moved by training:")[1].split()[0])
    assert moved >= len(one) - 2        # (a bias may stay put in 4 steps)


def test_training_reads_several_folders_of_png_and_jpeg_of_any_size(tmp_path):
    """JPEG and PNG, RGBA and grey, tiny and large images, non-images skipped; crops are drawn
    in proportion to pixel counts (the small image is neither over- nor under-represented)."""
    from PIL import Image
    from codec.data.crops import CropSampler, load_image_folders
    from codec.data.datasets import DEFAULT_PHOTO_DIRS
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), np.uint8)).save(a / "big.jpg",
                                                                       quality=95)
    Image.fromarray(np.full((20, 30, 4), 200, np.uint8)).save(a / "small.png")   # RGBA
    Image.fromarray(np.full((64, 64), 10, np.uint8)).save(b / "grey.jpeg")
    (b / "notes.txt").write_text("not an image")
    (b / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    images = load_image_folders([a, b])
    assert [i.shape for i in images] == [(300, 400, 3), (20, 30, 3), (64, 64, 3)]
    sampler = CropSampler(images, 32)
    batch = sampler.batch(seed=1, step=7, size=600)
    assert batch.shape == (600, 32, 32, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch, sampler.batch(seed=1, step=7, size=600))
    assert not np.array_equal(batch, sampler.batch(seed=1, step=8, size=600))
    areas = np.array([300 * 400, 32 * 32, 64 * 64], float)   # the small image, padded to 32²
    from_small = np.mean([c.min() == c.max() == 200 for c in batch])
    assert from_small == pytest.approx(areas[1] / areas.sum(), abs=.02)
    assert [d.name for d in DEFAULT_PHOTO_DIRS] == [
        "photos-train", "photos-train-extra", "photos-train-large", "photos-train-imagenet"]


@pytest.mark.slow
def test_the_ladder_trains_anchor_then_every_lambda_and_continues_after_a_stop(tmp_path,
                                                                               monkeypatch):
    from codec.ladder import LadderConfig, cache_root, run_ladder
    from codec.models.bls2017_train import ImageTrainConfig
    monkeypatch.setenv("RDPIPE_CACHE", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 64, 3)).astype(np.uint8) for _ in range(2)]
    config = LadderConfig(name="tiny", lambdas=(0.02, 0.005), anchor_lmbda=0.01, anchor_steps=4,
                          finetune_steps=3, anchor_warmup_steps=1, finetune_warmup_steps=1,
                          probe_every=2, base=ImageTrainConfig(
                              filters=8, patch_size=32, batch_size=2, schedule="cosine",
                              checkpoint_minutes=0, log_seconds=0, verbose=0))
    stopped = run_ladder(config, hours=1e-9, images=images)      # the deadline has passed
    assert stopped["steps_done"] == 0 and not stopped["models"]["anchor"]["finished"]
    assert stopped["steps_total"] == 4 + 2 * 3
    status = run_ladder(config, images=images, probe_images=images[:1])
    root = tmp_path / "cache" / "ladders" / "tiny"
    assert json.loads((root / "ladder.json").read_text()) == status
    assert status["steps_done"] == status["steps_total"] == 4 + 2 * 3
    assert list(status["models"]) == ["anchor", "q1", "q2"]
    q1, q2 = (root / "q1_l0.005", root / "q2_l0.02")              # rungs ordered by λ
    for directory, lmbda in ((q1, .005), (q2, .02)):
        summary = json.loads((directory / "summary.json").read_text())
        assert summary["config"]["lmbda"] == lmbda and summary["steps"] == 3
        assert summary["config"]["init_from"] == str(root / "anchor_l0.01")
        assert (directory / "saved_model" / "saved_model.pb").is_file()
    # Fine-tunes start their own schedule (a fresh Adam), not the anchor's step count.
    assert [e["step"] for e in
            (json.loads(l) for l in (q1 / "train_log.jsonl").read_text().splitlines())] == \
        [1, 2, 3]
    assert status["models"]["q2"]["last_probe"]["step"] == 2
    again = run_ladder(config, images=images)                     # nothing left to do
    assert again["steps_done"] == again["steps_total"]


def test_train_zoo_command_help_names_its_options():
    result = subprocess.run([sys.executable, "-m", "cli.main", "train-zoo", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0
    for option in ("--hours", "--anchor-steps", "--finetune-steps", "--lambdas", "RDPIPE_CACHE"):
        assert option in result.stdout


def test_an_ms_ssim_ladder_plans_compressai_lambdas_and_starts_from_the_mse_anchor(
        tmp_path, monkeypatch):
    """`rdpipe train-zoo --distortion ms-ssim`: CompressAI's MS-SSIM λ, 256² crops, the MSE
    ladder's trained anchor as the start (a deadline already past: only the plan is written)."""
    from cli.main import main
    monkeypatch.setenv("RDPIPE_CACHE", str(tmp_path / "cache"))
    anchor = tmp_path / "cache" / "ladders" / "bls2017" / "anchor_l0.013"
    anchor.mkdir(parents=True)
    (anchor / "summary.json").write_text("{}")
    assert main(["train-zoo", "--distortion", "ms-ssim", "--hours", "1e-9",
                 "--probe-images", "0"]) == 0
    status = json.loads((tmp_path / "cache" / "ladders" / "bls2017-msssim" /
                         "ladder.json").read_text())
    plan = status["config"]
    assert plan["lambdas"] == [2.4, 4.58, 8.73, 16.64, 31.73, 60.5, 115.37, 220.0]
    assert plan["anchor_lmbda"] == 16.64 and plan["anchor_init_from"] == str(anchor)
    assert plan["base"]["distortion"] == "ms-ssim" and plan["base"]["patch_size"] == 256
    assert status["steps_done"] == 0
