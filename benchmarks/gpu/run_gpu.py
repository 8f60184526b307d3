"""Train → export → convert → simulate on a GPU, within fixed time budgets; writes results JSON per model.

Each stage prints what it measured. Training budgets shorten the cosine schedule after the first epoch
(qcfs-train --time-budget). SNN evaluation uses qcfs.runtime.torch_snn (float64, exact integers) and is
cross-checked bit for bit against the NumPy reference runtime on a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from qcfs.data import load_split

TS = [1, 2, 4, 8, 16, 32, 64]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def train(arch: str, dataset: str, out: Path, budget: float, epochs: int, data_dir: str | None, lr: float) -> dict:
    from qcfs.frontend.train import TrainConfig, train_model

    t0 = time.perf_counter()
    cfg = TrainConfig(model=arch, dataset=dataset, output=str(out), epochs=epochs, device=DEVICE,
                      data_dir=data_dir, time_budget=budget, progress=False, batch=128, lr=lr)
    rec = train_model(cfg, log=lambda line: print(line, flush=True))
    rec["train_wall_seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def evaluate(name: str, ckpt: Path, dataset: str, data_dir: str | None, outdir: Path, eval_budget: float) -> dict:
    import onnxruntime as ort

    from qcfs.pipeline import canonical_onnx, checkpoint_to_onnx, to_intnet
    from qcfs.runtime.torch_snn import simulate_torch

    res: dict = {"model": name, "dataset": dataset}
    onnx_path = outdir / f"{name}.onnx"
    t0 = time.perf_counter()
    checkpoint_to_onnx(ckpt, onnx_path)
    canon = canonical_onnx(onnx_path)
    nets = {mode: to_intnet(canon, mode=mode) for mode in ("int", "float")}
    res["convert_seconds"] = round(time.perf_counter() - t0, 2)
    x, y = load_split(dataset, "test", data_dir)
    # ANN accuracy with onnxruntime on the exported graph (the deployment hand-off), all samples
    info_mean = json.loads({p.key: p.value for p in canon.metadata_props}["qcfs.normalize.mean"])
    info_std = json.loads({p.key: p.value for p in canon.metadata_props}["qcfs.normalize.std"])
    xn = ((x - np.array(info_mean, np.float32).reshape(1, -1, 1, 1)) / np.array(info_std, np.float32).reshape(1, -1, 1, 1)).astype(np.float32)
    sess = ort.InferenceSession(canon.SerializeToString(), providers=["CPUExecutionProvider"])
    pred = np.concatenate([sess.run(None, {"input": xn[i:i + 500]})[0].argmax(1) for i in range(0, len(y), 500)])
    res["ann_accuracy_onnxruntime"] = round(100.0 * float((pred == y).mean()), 3)
    log(f"{name}: ANN (onnxruntime) {res['ann_accuracy_onnxruntime']} % on {len(y)}")
    for mode, net in nets.items():
        # measure speed on one batch, then take as many samples as the budget allows (reported)
        t0 = time.perf_counter()
        simulate_torch(net, x[:256], TS, device=DEVICE, progress=False)
        sync()
        per_sample = (time.perf_counter() - t0) / 256
        n = int(min(len(y), max(256, eval_budget / 2 / per_sample)))
        # evenly spaced samples: test sets in class-folder order make a prefix class-biased
        idx = np.unique(np.linspace(0, len(y) - 1, n).round().astype(int))
        n = len(idx)
        t0 = time.perf_counter()
        sim = simulate_torch(net, x[idx], TS, device=DEVICE, progress=False)
        seconds = time.perf_counter() - t0
        res[f"ann_accuracy_same_samples_{mode}"] = round(100.0 * float((pred[idx] == y[idx]).mean()), 3)
        rows = []
        for T in TS:
            acc = 100.0 * float((sim.predictions(T) == y[idx]).mean())
            spikes = {k: float(v.mean()) for k, v in sim.spikes[T].items()}
            rows.append({"T": T, "accuracy": round(acc, 3), "spikes_per_sample": round(sum(spikes.values()), 1)})
        res[f"snn_{mode}"] = {"samples": n, "seconds": round(seconds, 1), "results": rows}
        log(f"{name} {mode}: " + " ".join(f"T{r['T']}={r['accuracy']}" for r in rows)
            + f" ({n} samples, ANN on them {res[f'ann_accuracy_same_samples_{mode}']}, {seconds:.0f} s)")
    # bit-exactness of the GPU runtime against the NumPy reference on a subset
    from qcfs.runtime.numpy_snn import simulate

    k = 32
    ref = simulate(nets["int"], x[:k], [8], progress=False)
    gpu = simulate_torch(nets["int"], x[:k], [8], device=DEVICE, progress=False)
    same = all(np.array_equal(a, gpu.counts_arrays()[key]) for key, a in ref.counts_arrays().items())
    res["gpu_vs_numpy_bit_exact"] = {"samples": k, "T": 8, "identical": bool(same)}
    log(f"{name}: GPU vs NumPy counts identical on {k} samples at T=8: {same}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cifar-dir", required=True)
    ap.add_argument("--fashion-dir")
    ap.add_argument("--plan", default="fashion-mnist:cnn:40:30,cifar10:resnet20:90:200,cifar10:vgg16:170:200",
                    help="dataset:arch:train_seconds:nominal_epochs,...")
    ap.add_argument("--eval-seconds", type=float, default=50)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--evaluate-only", help="dataset:name:CHECKPOINT — skip training, evaluate this checkpoint")
    ap.add_argument("--Ts", default="1,2,4,8,16,32,64", help="time steps to evaluate")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test of this script")
    args = ap.parse_args()
    global DEVICE, TS
    DEVICE = args.device
    TS = [int(t) for t in args.Ts.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {"gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "none (cpu)", "torch": torch.__version__, "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    log(f"environment {env}")
    if args.fashion_dir:
        os.environ["QCFS_FASHION_MNIST_DIR"] = args.fashion_dir
    summary = {"environment": env, "models": []}
    if args.evaluate_only:
        dataset, name, ckpt_path = args.evaluate_only.split(":", 2)
        data_dir = args.cifar_dir if dataset == "cifar10" else args.fashion_dir
        res = evaluate(name, Path(ckpt_path), dataset, data_dir, out, args.eval_seconds)
        res["command"] = "python benchmarks/gpu/run_gpu.py " + " ".join(sys.argv[1:])
        summary["models"].append(res)
        (out / "gpu_results.json").write_text(json.dumps(summary, indent=1))
        return
    for item in args.plan.split(","):
        dataset, arch, seconds, epochs = item.split(":")
        data_dir = args.cifar_dir if dataset == "cifar10" else args.fashion_dir
        name = f"{arch}-{dataset}"
        ckpt = out / f"{name}.pt"
        try:
            rec = train(arch, dataset, ckpt, float(seconds), int(epochs), data_dir, args.lr)
            log(f"{name}: trained {rec['epoch']} epochs in {rec['train_wall_seconds']} s, test {rec['test_acc']} %")
            res = evaluate(name, ckpt, dataset, data_dir, out, args.eval_seconds)
            res["training"] = rec
            res["command"] = f"benchmarks/gpu/run.sh OUT CIFAR --plan {item}"
        except Exception as err:  # a failed model must not cost the other models' results
            traceback.print_exc()
            res = {"model": name, "error": f"{type(err).__name__}: {err}"}
        summary["models"].append(res)
        (out / "gpu_results.json").write_text(json.dumps(summary, indent=1))
        if arch == "vgg16" and ckpt.exists():
            ckpt.unlink()  # 134 MB: too large to bring back; its results are in the JSON
            for extra in out.glob(f"{name}.onnx*"):
                extra.unlink()
    log("done")


if __name__ == "__main__":
    main()
