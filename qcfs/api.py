"""The Python API: from a QCFS model to spike counts in three lines.

    import qcfs
    net = qcfs.convert(model, example_input=x)      # torch module, onnx.ModelProto, or any model file
    res = net.simulate(images, T=[1, 2, 4])          # SimResult: logits and spike counts per T
    net.save("model.lava.npz")                       # intnet | lava | netx | nir | snn-onnx | onnx

Everything here is a thin layer over the model files (qcfs.pipeline), the exporters, the toolchain and
qcfs.simulate, and the CLIs call it: `qcfs-run` reads its model with `load`, `qcfs-export` is `convert`, then
`calibrate_on`, `graded`, `save` (or `export_onnx`), so `net.simulate(...)` gives the integers `qcfs-run` gives
and `net.save(...)` the file `qcfs-export` writes for the same model. Errors are `qcfs.errors.QCFSError` with
one line that names what is wrong.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from qcfs.errors import QCFSError
from qcfs.intnet import HardwareProfile, IntNet
from qcfs.runtime.result import SimResult

if TYPE_CHECKING:
    import onnx
    import torch

__all__ = ["Network", "SimResult", "convert", "export_onnx", "load", "train", "SAVE_FORMATS", "BACKENDS"]

# what `Network.save` writes, by format name, and the suffix that selects it when no format is given
SAVE_FORMATS: dict[str, str] = {"intnet": ".intnet.npz", "lava": ".lava.npz", "netx": ".net.h5", "nir": ".nir",
                                "snn-onnx": ".snn.onnx", "onnx": ".onnx"}
BACKENDS = ("numpy", "torch", "ort", "fused", "lava", "netx")
DEFAULT_TS = (1, 2, 4, 8, 16, 32)


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A converted network: the integer (or float) IF network every backend runs, and the canonical QCFS ONNX
    it came from (None when it was loaded from an exported file, which carries only the IF network).

    Immutable: `calibrate`, `calibrate_on` and `graded` return a new Network, so the original stays available
    for comparison."""

    intnet: IntNet
    canonical_onnx: onnx.ModelProto | None = None
    source: str | None = None  # the file it was read (or derived) from, if any (save() never overwrites it)

    # --- what it is ---------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """"int" (the hardware network: integer weights, thresholds and membranes) or "float"."""
        return self.intnet.mode

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image; images given to simulate/calibrate are [N, C, H, W] in [0, 1]."""
        return tuple(self.intnet.input.shape)

    @property
    def num_classes(self) -> int:
        return self.intnet.num_classes

    def __repr__(self) -> str:
        layers = ", ".join(f"{layer.name}:{layer.kind}{tuple(layer.shape)}" for layer in self.intnet.layers)
        return f"Network(mode={self.mode}, input={self.input_shape}, layers=[{layers}])"

    # --- running it -----------------------------------------------------------------------------------
    def simulate(self, images: Any, T: int | Iterable[int] = DEFAULT_TS, *, backend: str = "numpy",
                 timing: str = "sync", batch: int = 256, progress: bool = False, **options: Any) -> SimResult:
        """Simulate `images` ([N, C, H, W] floats in [0, 1]) for every T in one run of max(T) steps.

        backend: numpy (reference), torch, ort (onnxruntime on the SNN graph), fused (onnxruntime int8 GEMMs and
        a numba IF loop), lava, netx (README "Fast exact backends", "Formats"); the integer backends agree bit for bit. `options` go to qcfs.simulate.SimOptions
        (device, pre_steps, netx_semantics, timeout, raster_neurons). Returns the SimResult: logits[T],
        spikes[T][layer], `accuracy(labels)`, `counts_arrays()`."""
        from qcfs.simulate import SimOptions, check_torch_device, run_backend

        if backend not in BACKENDS:
            raise QCFSError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        Ts = _time_steps(T)
        x = _images(images, self.input_shape)
        if backend == "torch":
            check_torch_device(options.get("device"))
        fields = {f.name for f in dataclasses.fields(SimOptions)} - {"backend", "Ts", "timing", "batch", "progress"}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise QCFSError(f"simulate: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
        opts = SimOptions(backend=backend, Ts=tuple(Ts), timing=timing, batch=int(batch), progress=progress,
                          **options)
        return run_backend(self.intnet, x, opts)

    def ann_logits(self, images: Any) -> np.ndarray:
        """The ANN's logits (onnxruntime on the canonical ONNX, inputs normalized as the SNN's are), for the
        ANN-vs-SNN comparison; needs a Network converted from a model, not loaded from an exported file."""
        if self.canonical_onnx is None:
            raise QCFSError("this network was loaded from an exported file, which holds no ANN; "
                            "convert the ONNX or checkpoint to compare with the ANN")
        import onnxruntime as ort

        x = _images(images, self.input_shape)
        sess = ort.InferenceSession(self.canonical_onnx.SerializeToString(), providers=["CPUExecutionProvider"])
        c = x.shape[1]  # normalized as qcfs.evaluate.ann_correct does for qcfs-run's ANN column
        mean = np.broadcast_to(np.asarray(self.intnet.input.mean, np.float64), (c,)).reshape(1, c, 1, 1)
        std = np.broadcast_to(np.asarray(self.intnet.input.std, np.float64), (c,)).reshape(1, c, 1, 1)
        return sess.run(None, {sess.get_inputs()[0].name: ((x - mean) / std).astype(np.float32)})[0]

    def metrics(self, result: SimResult, labels: Any) -> list[dict[str, Any]]:
        """One row per T, as `qcfs-run` tabulates them: accuracy, spikes per sample and per layer, synaptic
        operations per sample, spikes per neuron per step, latency in steps (qcfs.runtime.metrics)."""
        from qcfs.runtime.metrics import net_stats, per_t_rows

        return per_t_rows(result, net_stats(self.intnet), np.asarray(labels))

    # --- changing it ---------------------------------------------------------------------------------
    def calibrate(self, images: Any, *, target_T: int, method: str = "auto", labels: Any = None,
                  progress: bool = False, provenance: Mapping[str, Any] | None = None,
                  show_report: bool = False, **options: Any) -> Network:
        """A copy calibrated for a window of `target_T` steps on `images` (training images, [N, C, H, W] in
        [0, 1]; never the test set) — what `qcfs-export --snn-calib METHOD --target-T T` does
        (README "Low latency"). method: one of qcfs.toolchain.snn_calib.METHOD_NAMES; "auto" tries the
        candidates and keeps the best on these images, so it needs `labels`. show_report prints each layer's
        rate error before and after (`--show-passes`). `options` go to the method
        (qcfs.toolchain.snn_calib.calibrate)."""
        from qcfs.toolchain.snn_calib import calibrate, calibrate_auto

        _check_calibration(method, target_T)
        x = _images(images, self.input_shape)
        y = None if labels is None else _labels(labels, len(x))
        prov = dict(provenance or {"source": "qcfs.api", "samples": int(len(x))})
        if method == "auto":
            if y is None:
                raise QCFSError("method='auto' picks the candidate that classifies the calibration images best: "
                                "pass their labels=")
            out, report = calibrate_auto(self.intnet, x, y, T=int(target_T), progress=progress,
                                         provenance=prov, **options)
        else:
            out, report = calibrate(self.intnet, x, T=int(target_T), method=method, progress=progress,
                                    provenance=prov, labels=y, **options)
        if show_report:
            print("\n".join(report.lines()))
        return dataclasses.replace(self, intnet=out)

    def calibrate_on(self, dataset: str, *, target_T: int, method: str = "auto", data_dir: str | None = None,
                     samples: int = 1024, seed: int = 0, progress: bool = False,
                     show_report: bool = False) -> Network:
        """`calibrate` on a seeded sample of `samples` images of `dataset`'s training split (never its test
        images), with their labels: what `qcfs-export --snn-calib METHOD --target-T T --dataset D
        [--data-dir DIR] [--calib-samples N] [--seed S]` does. The dataset, split and seed are recorded in the
        network's metadata, so `qcfs-run` can tell where the calibration came from."""
        from qcfs.toolchain.snn_calib.sampling import calibration_images01

        _check_calibration(method, target_T)  # before any image is decoded
        if isinstance(samples, bool) or int(samples) != samples or not 1 <= samples <= 1_000_000:
            raise QCFSError(f"samples (--calib-samples) must be in 1..1000000, got {samples!r}")
        if isinstance(seed, bool) or int(seed) != seed or not 0 <= seed < 2**32:
            raise QCFSError(f"seed must be an integer in 0..2^32-1, got {seed!r}")
        images, labels, _ = calibration_images01(dataset, data_dir, self.input_shape, int(samples), int(seed))
        return self.calibrate(images, target_T=target_T, method=method, labels=labels, progress=progress,
                              provenance={"dataset": dataset, "split": "train", "seed": int(seed)},
                              show_report=show_report)

    def graded(self, spikes_per_step: int, *, scale: bool = True) -> Network:
        """A copy whose IF neurons emit up to `spikes_per_step` (M) spikes per step as one graded message
        (`qcfs-export --spikes-per-step M`; README "Graded spikes"). scale=True multiplies every per-step
        current by M, so T steps act like M·T binary ones (exact at T = 1 with M = L); False keeps the
        currents, so M only caps the spikes per step. intnet, lava and snn-onnx files hold it; netx and NIR
        refuse it. A graded network cannot be calibrated (calibration simulates binary spikes)."""
        from qcfs.toolchain.graded import make_graded

        return dataclasses.replace(self, intnet=make_graded(self.intnet, spikes_per_step, scale=scale))

    # --- writing it ----------------------------------------------------------------------------------
    def save(self, path: str | Path, format: str | None = None, *, opset: int | None = None,
             kernels: str = "auto", nir_profile: str = "qcfs") -> Path:
        """Write the network as `format` (intnet, lava, netx, nir, snn-onnx; onnx: the canonical QCFS ONNX),
        by default the one its suffix names (SAVE_FORMATS); what `qcfs-export --backend FORMAT` writes.
        Atomic (a temporary file renamed on success) and never over the file the network was read from.

        Each option belongs to one format and is refused with another: opset (onnx: 13..20, default 20;
        refused when the graph cannot be converted exactly), kernels (snn-onnx: auto, int8 or float32;
        README "Fast exact backends"), nir_profile (nir: qcfs, readers or snntorch; README "Formats")."""
        fmt = format or _format_from_suffix(Path(path))
        if fmt not in SAVE_FORMATS:
            raise QCFSError(f"format must be one of {', '.join(SAVE_FORMATS)}, got {fmt!r}")
        for name, value, default, owner in (("opset", opset, None, "onnx"), ("kernels", kernels, "auto", "snn-onnx"),
                                            ("nir_profile", nir_profile, "qcfs", "nir")):
            if value != default and fmt != owner:
                raise QCFSError(f"{name}= applies to format {owner} only, not {fmt}")
        if fmt == "snn-onnx":
            from qcfs.exporters.snn_onnx import KERNELS

            if kernels not in KERNELS:
                raise QCFSError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
        return _save(path, self.source,
                     lambda out: _write(self, fmt, out, opset=opset, kernels=kernels, nir_profile=nir_profile))

    def fit_report(self, profile: Any = "loihi2", chips: int | None = None) -> Any:
        """The estimated resources of this network on a chip profile (qcfs.report.resources.fit_report: a
        FitReport with per-layer neurons, synapses, memory, cores and chips; an estimate, never a guarantee)."""
        from qcfs.report.resources import fit_report

        return fit_report(self.intnet, profile, chips)


# --- entry points ------------------------------------------------------------------------------------------
def convert(model: Any, example_input: Any = None, *, mode: str | None = None, weight_bits: int = 8,
            profile: HardwareProfile | None = None, pool: str | None = None,
            normalize: tuple[Any, Any] | None = None, dataset: str | None = None, arch: str | None = None,
            show_passes: bool = False, **import_options: Any) -> Network:
    """Convert a QCFS model into an integer (mode="int", the default) or float IF network; what
    `qcfs-export MODEL` does before it writes anything.

    model: a torch.nn.Module built with QCFS activations (your own or a zoo model; needs `example_input`,
    one batch [N, C, H, W] or image [C, H, W], for the input shape), an onnx.ModelProto, or a path to any
    file the CLIs accept (.pt checkpoint, .onnx, .intnet.npz, .lava.npz, .snn.onnx, .net.h5, .nir). An
    exported file is read as it is, in its own mode (another `mode` is refused: it needs the ONNX or
    checkpoint).
    pool: "compose" (default) folds each average pool of spikes into the next synapse; "separate" keeps it
    as an exact sum-pool stage (fewer synapses, one more pipelined step; README "Hardware profile").
    Refused for an exported file, which keeps the pooling it was converted with.
    normalize=(mean, std) for a torch module that expects normalized inputs (images stay in [0, 1]).
    dataset: the dataset the model is for (for `calibrate="relu"` and `arch`, and the metadata).
    arch: `model` is a bare state dict of the QCFS authors' code (authors-vgg16, authors-resnet18,
    authors-resnet34, authors-resnet20; with L= and dataset=; docs/authors_checkpoints.md).
    profile: the hardware bit widths (qcfs.intnet.HardwareProfile; default Loihi 2 as Lava models it).
    import_options go to the ONNX importer (calibrate="relu", data_dir=, L=, percentile=)."""
    canon, source = _canonical(model, example_input, normalize, dataset, arch, import_options)
    if canon is None:  # an exported file: the IF network itself
        if pool is not None:
            from qcfs.pipeline import model_kind

            raise QCFSError(f"{source}: --pool (pool=) applies when a model is converted; an exported "
                            f"{model_kind(Path(str(source)))} network keeps the pooling it was converted with "
                            f"(drop --pool)")
        return load(source, mode=mode)  # type: ignore[arg-type]
    from qcfs.toolchain.convert import convert as convert_onnx

    intnet = convert_onnx(canon, mode=mode or "int", weight_bits=weight_bits, show_passes=show_passes,
                          profile=profile, pool=pool or "compose")
    return Network(intnet=intnet, canonical_onnx=canon, source=source)


def export_onnx(model: Any, path: str | Path, example_input: Any = None, *, opset: int | None = None,
                normalize: tuple[Any, Any] | None = None, dataset: str | None = None, arch: str | None = None,
                **import_options: Any) -> Path:
    """Write the canonical QCFS ONNX of `model` (docs/canonical_onnx.md; what `qcfs-export --backend onnx`
    writes) without building the IF network: `convert(model).save(path, format="onnx")` writes the same
    bytes, but converts first, which for VGG-16 at 224 px takes tens of seconds and gigabytes (BENCHMARKS.md).

    model and the options: as for `convert`. opset: 13..20 (default 20), refused when the graph cannot be
    converted exactly. Atomic, and never over the model file. An exported network holds no ANN: refused."""
    canon, source = _canonical(model, example_input, normalize, dataset, arch, import_options)
    if canon is None:
        from qcfs.pipeline import model_kind

        kind = model_kind(Path(str(source)))
        raise QCFSError(f"{source}: an exported {kind} network holds no ONNX graph; it can only be exported "
                        f"further as intnet, lava, snn-onnx, netx or nir")
    return _save(path, source, lambda out: _write_onnx(canon, out, opset))


def load(path: str | Path, *, mode: str | None = None,
         normalize: tuple[Sequence[float], Sequence[float]] | None = None) -> Network:
    """Read any model file, as `qcfs-run --model` does: an exported network (.intnet.npz, .lava.npz, .snn.onnx,
    .net.h5, .nir) as it is, a checkpoint or ONNX file converted (mode "int" unless `mode` says "float").

    mode: None keeps an exported network's own mode; another mode than the file's is refused (it needs the
    ONNX or checkpoint). normalize=(mean, std) replaces the input normalization (qcfs-run --normalize): in
    the ONNX before conversion, so the 8-bit input scale is recomputed for the new range; an exported network
    keeps its scale, refused if a pixel would saturate it."""
    from qcfs import pipeline
    from qcfs.safe_io import safe_model_input

    p = safe_model_input(path)
    kind = pipeline.model_kind(p)
    if kind in pipeline.EXPORTED:
        intnet = pipeline.load_exported(p, kind)
        if mode is not None and mode != intnet.mode:
            raise QCFSError(f"{p}: is a {intnet.mode}-mode IntNet; --mode {mode} needs the ONNX or checkpoint")
        if normalize is not None:
            from qcfs.toolchain.renormalize import renormalized

            intnet = renormalized(intnet, *_mean_std(normalize), str(p))
        return Network(intnet=intnet, source=str(p))
    canon = pipeline.canonical_onnx(p)
    if normalize is not None:
        from qcfs.toolchain.renormalize import with_normalization

        canon = with_normalization(canon, *_mean_std(normalize))
    return Network(intnet=pipeline.to_intnet(canon, mode=mode or "int"), canonical_onnx=canon, source=str(p))


def train(model: str = "cnn", dataset: str = "digits", output: str | Path = "model.pt", *, log: Any = None,
          **config: Any) -> Path:
    """Train a zoo model with QCFS activations (`qcfs-train`; config keys: qcfs.frontend.train.TrainConfig —
    L, epochs, lr, batch, seed, device, data_dir, recipe, ...). Returns the checkpoint path, which
    `qcfs.convert` reads. `log` receives each epoch's record as one JSON line (loss, accuracies, every λ;
    default: nothing is printed)."""
    from qcfs import safe_io
    from qcfs.frontend.train import TrainConfig, train_model

    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "dataset", "output"}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise QCFSError(f"train: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    out = safe_io.check_output(output, "output")
    config.setdefault("progress", False)
    train_model(TrainConfig(model=model, dataset=dataset, output=str(out), **config), log=log or (lambda _: None))
    return Path(output)


# --- helpers -------------------------------------------------------------------------------------------------
def _canonical(model: Any, example_input: Any, normalize: tuple[Any, Any] | None, dataset: str | None,
               arch: str | None, import_options: dict[str, Any]) -> tuple[onnx.ModelProto | None, str | None]:
    """(canonical ONNX, source path): None for an exported file, which is loaded as it is."""
    import onnx

    from qcfs import pipeline

    if normalize is not None and not _is_module(model):
        raise QCFSError("normalize= applies to a torch module; an ONNX model or file carries its own "
                        "(qcfs.normalize.* metadata; qcfs-run --normalize overrides it)")
    if arch is not None and not isinstance(model, (str, Path)):
        raise QCFSError(f"arch={arch!r} reads a state dict file of the QCFS authors' code: pass its path, "
                        f"not a {type(model).__name__}")
    if dataset is not None:  # the importer's calibrate="relu" measures on it
        import_options = {**import_options, "dataset": dataset}
    if isinstance(model, (str, Path)):
        from qcfs.safe_io import safe_model_input

        path = safe_model_input(model)
        if arch is None and pipeline.model_kind(path) in pipeline.EXPORTED:
            return None, str(path)
        authors = None
        if arch is not None:  # a bare state dict records neither (docs/authors_checkpoints.md)
            if import_options.get("L") is None or not dataset:
                raise QCFSError(f"arch={arch!r} needs L= (the quantization steps it was trained with) and "
                                f"dataset= (the authors' checkpoints record neither)")
            authors = {"arch": arch, "L": import_options["L"], "dataset": dataset}
        return pipeline.canonical_onnx(path, authors, **import_options), str(path)
    if isinstance(model, onnx.ModelProto):
        return _canonical_proto(model, import_options), None
    if _is_module(model):
        if example_input is None:
            raise QCFSError(f"{type(model).__name__}: a torch module needs example_input (one batch or image) "
                            f"for its input shape")
        from qcfs.exporters.onnx_export import export_user_module

        proto = export_user_module(model, example_input, normalize=normalize, dataset=dataset)
        return _canonical_proto(proto, import_options), None
    raise QCFSError(f"cannot convert a {type(model).__name__}: pass a torch.nn.Module, an onnx.ModelProto or a "
                    f"model file path")


def _is_module(model: Any) -> bool:
    """A torch.nn.Module, checked without importing torch for the other kinds of model."""
    import sys

    nn = sys.modules.get("torch.nn")
    return nn is not None and isinstance(model, nn.Module)


def _canonical_proto(proto: onnx.ModelProto, import_options: dict[str, Any]) -> onnx.ModelProto:
    """The importer reads files (its checks include external data next to the file): hand it one."""
    import onnx

    from qcfs.toolchain.importer import load_canonical

    with tempfile.TemporaryDirectory(prefix="qcfs-api-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save_model(proto, str(path))
        return load_canonical(path, **import_options)


def _save(path: str | Path, source: str | None, write: Callable[[Path], object]) -> Path:
    """Check `path` before any work (never the source file), then write it atomically."""
    from qcfs import safe_io

    out = safe_io.check_output(path, "path", inputs=[source])
    with safe_io.atomic_path(out) as tmp:
        write(tmp)
    return Path(path)


def _write_onnx(canon: onnx.ModelProto, out: Path, opset: int | None) -> None:
    import onnx

    if opset is not None:
        from qcfs.exporters.opset import convert_opset

        canon = convert_opset(canon, opset)
    onnx.save_model(canon, str(out))


def _write(net: Network, fmt: str, out: Path, *, opset: int | None, kernels: str, nir_profile: str) -> None:
    if fmt == "onnx":
        if net.canonical_onnx is None:
            raise QCFSError("this network was loaded from an exported file, which holds no ONNX graph")
        _write_onnx(net.canonical_onnx, out, opset)
    elif fmt == "intnet":
        net.intnet.save(out)
    elif fmt == "lava":
        from qcfs.exporters.lava_export import export_lava

        export_lava(net.intnet, out)
    elif fmt == "netx":
        from qcfs.exporters.netx_export import export_netx

        export_netx(net.intnet, out)
    elif fmt == "nir":
        from qcfs.exporters.nir_export import export_nir

        export_nir(net.intnet, out, profile=nir_profile)
    else:
        from qcfs.exporters.snn_onnx import export_snn_onnx

        export_snn_onnx(net.intnet, out, kernels=kernels)


def _format_from_suffix(path: Path) -> str:
    for fmt, suffix in sorted(SAVE_FORMATS.items(), key=lambda kv: -len(kv[1])):  # .snn.onnx before .onnx
        if path.name.endswith(suffix):
            return fmt
    raise QCFSError(f"{path}: cannot tell the format from the name; pass format= one of {', '.join(SAVE_FORMATS)}")


def _check_calibration(method: str, target_T: int) -> None:
    from qcfs.toolchain.snn_calib import METHOD_NAMES

    if method not in METHOD_NAMES:
        raise QCFSError(f"unknown calibration method {method!r}; choose one of {', '.join(METHOD_NAMES)}")
    if isinstance(target_T, bool) or int(target_T) != target_T or not 1 <= target_T <= 1024:
        raise QCFSError(f"target_T must be an integer in 1..1024, got {target_T!r}")


def _mean_std(normalize: tuple[Sequence[float], Sequence[float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = normalize
    return tuple(map(float, mean)), tuple(map(float, std))


def _time_steps(T: int | Iterable[int]) -> list[int]:
    Ts = [T] if isinstance(T, (int, np.integer)) else list(T)
    if not Ts or any(isinstance(t, bool) or int(t) != t or t < 1 for t in Ts):
        raise QCFSError(f"T must be a positive integer or a list of them, got {T!r}")
    return sorted({int(t) for t in Ts})


def _images(images: Any, shape: Sequence[int]) -> np.ndarray:
    """[N, C, H, W] float images in [0, 1] (a torch tensor or array; one [C, H, W] image is a batch of one)."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    x = np.asarray(images)
    if x.ndim == len(shape):
        x = x[None]
    if x.dtype.kind != "f" or tuple(x.shape[1:]) != tuple(shape) or len(x) == 0:
        raise QCFSError(f"images must be float [N, {', '.join(map(str, shape))}] in [0, 1], got {x.dtype} "
                        f"{tuple(x.shape)}")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise QCFSError("images must be finite and in [0, 1] (the network's own normalization is applied "
                        "inside; pass raw pixels scaled to [0, 1])")
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(labels: Any, n: int) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise QCFSError(f"labels must be {n} integers, got {y.dtype} {y.shape}")
    return y.astype(np.int64)
