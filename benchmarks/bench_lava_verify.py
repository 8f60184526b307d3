"""Same-run ratio: load_lava_file (no check) vs verified_lava_file (validation + digest + re-derivation of
every Lava field from the embedded IntNet). Usage: python benchmarks/bench_lava_verify.py digits cifar10"""
import sys, time, tempfile
from pathlib import Path
from qcfs.cli.export import main as export_main
from qcfs.exporters.lava_export import load_lava_file
from qcfs.exporters.lava_verify import verified_lava_file
for ds in sys.argv[1:]:
    out = Path(tempfile.mkdtemp()) / f"{ds}.lava.npz"
    assert export_main([f"models/{ds}/model.onnx", "--backend", "lava", "-o", str(out)]) == 0
    def best(f, n=5):
        ts = []
        for _ in range(n):
            t = time.perf_counter(); f(out); ts.append(time.perf_counter() - t)
        return min(ts)
    a, b = best(load_lava_file), best(verified_lava_file)
    print(f"{ds}: load {a*1e3:.1f} ms, verified load {b*1e3:.1f} ms, ratio {b/a:.2f}")
