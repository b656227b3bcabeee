"""Predict from a checkpoint alone: images, arrays, files, folders, CSV manifests and DICOM.

The :class:`Predictor` applies exactly the checkpoint's preprocessing (channels, size, mean/std,
DICOM window), its temperature, and its decision threshold. In-memory images follow the pixel
convention (float in [0, 1]; ``uint8`` / ``uint16`` are scaled automatically, anything else that
does not fit raises a ``ValueError`` naming what the checkpoint expects). Inference is
thread-safe (one lock around the model), so one predictor can serve concurrent requests.

Out-of-distribution inputs: when the checkpoint carries OOD statistics (``meta.ood``, fitted at the
end of training), :meth:`Predictor.predict_with_ood` and :meth:`Predictor.predict_files` give each
image an ``ood_score`` (squared Mahalanobis distance of its feature statistics to the nearest
training class mean, or to the one training mean of a multi-label model, :func:`medclass.inference.forward_with_features`) and ``ood`` (score above the threshold set on validation). The features come
from the PyTorch model, also when the backend is ONNX (the exported file holds the logits only).

Example:
    >>> p = Predictor.from_checkpoint("workspace/default/resnet18/best.safetensors")  # doctest: +SKIP
    >>> p.predict(["person1_virus_6.jpeg"])  # doctest: +SKIP
    ['PNEUMONIA']
    >>> p.predict_files(["../shared/data/chest_xray/NORMAL"]).head()  # doctest: +SKIP
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..artifacts import CheckpointMeta, load_checkpoint, load_ood
from ..config import DataConfig
from ..data.io import read_image
from ..data.transforms import inference_transform
from ..data.volumes.prepare import VolumePrep, VolumeTransform, read_prepared
from ..errors import ImageReadError
from ..inference import forward_with_features, to_probs
from ..metrics.ood import MahalanobisOOD
from ..utils import torch_device
from ._backends import OnnxBackend, TorchBackend
from ._inputs import image_batch, iter_inputs, metadata_columns, to_unit_image
from ._verdict import DecisionRule
from .prediction_file import DoneRows

STREAM_ROWS = 1024  # rows of one part of iter_predict_files (what `medclass predict --out x.csv` writes at a time)


class Predictor:
    """A checkpoint ready for inference (PyTorch or ONNX Runtime forward pass).

    Attributes: ``meta`` (the checkpoint's :class:`~medclass.artifacts.CheckpointMeta`), ``classes``, ``threshold``, ``temperature``,
    ``model`` (the PyTorch model, also used for Grad-CAM), ``backend`` (``'torch'`` or ``'onnx'``), ``ood``
    (the out-of-distribution statistics, None for a checkpoint without them), ``checkpoint_path`` (the file or
    run folder it was loaded from, None when built from a model in memory; the saved evaluation is looked up there).

    A multi-label checkpoint (``meta.multi_label``) gives one independent probability per finding;
    finding ``k`` is present when ``p_k >= meta.finding_thresholds[k]`` (:meth:`present`) and the
    decision is the present findings joined by ``|`` (``none`` when there is none).
    """

    def __init__(self, model: torch.nn.Module, meta: CheckpointMeta, device: str = "cpu", onnx: str | Path | None = None,
                 ood: MahalanobisOOD | None = None) -> None:
        self.meta = meta
        self.ood = ood
        self.classes: list[str] = list(meta.classes)
        self.threshold = meta.threshold
        self.temperature = meta.temperature
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self._onnx = onnx
        self._forward = OnnxBackend(onnx, meta, str(device)) if onnx is not None else TorchBackend(self.model, self.device)
        self.window: str = meta.preprocessing.window
        # a volume model (CT/MRI): the checkpoint's own spacing, size, orientation and window (medclass.data.volumes)
        self.volume = VolumePrep.from_dict(dict(meta.preprocessing.volume)) if meta.preprocessing.volume else None
        self.transform = VolumeTransform(self.volume) if self.volume else inference_transform(meta.preprocessing)
        self._lock = threading.Lock()
        self._cam_layers: dict[tuple, torch.nn.Module] = {}  # the CAM layer per (target layer name, input shape)
        self.checkpoint_path: Path | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", onnx: str | Path | None = None) -> "Predictor":
        """Load a ``.safetensors`` checkpoint (or a run folder); ``onnx`` = an exported file to run instead of PyTorch.

        Pickled files (``.pth``, ``.ckpt``) are refused with a :class:`~medclass.errors.CheckpointError`.

        >>> Predictor.from_checkpoint("run/best.safetensors", onnx="run/best.onnx").backend  # doctest: +SKIP
        'onnx'
        """
        device = str(torch_device(device))  # a clear error for 'banana' or a GPU this machine lacks
        model, meta = load_checkpoint(path, device=device)
        predictor = cls(model, meta, device=device, onnx=onnx, ood=load_ood(path))
        predictor.checkpoint_path = Path(path)
        return predictor

    @property
    def backend(self) -> str:
        """``'torch'`` or ``'onnx'``."""
        return self._forward.name

    @property
    def binary(self) -> bool:
        """True for a two-class checkpoint (one logit, decision at :attr:`threshold`)."""
        return self.meta.binary

    @property
    def multi_label(self) -> bool:
        """True for a multi-label checkpoint (one sigmoid and one threshold per finding)."""
        return self.meta.multi_label

    @property
    def decision_rule(self) -> DecisionRule:
        """Classes, task and threshold(s) of :meth:`decide`, for displays of a decision."""
        if self.multi_label:
            return DecisionRule(tuple(self.classes), "multi_label", tuple(self.meta.finding_thresholds))
        if self.binary:
            return DecisionRule(tuple(self.classes), "binary", (float(self.threshold),))
        return DecisionRule(tuple(self.classes), "multi_class")

    def present(self, probs: np.ndarray) -> np.ndarray:
        """Multi-label: ``(n, K)`` booleans, finding ``k`` present when ``p_k >= its threshold``."""
        return np.asarray(probs) >= np.asarray(self.meta.finding_thresholds)

    # -- single steps -----------------------------------------------------------------------------
    def load(self, item: Any, where: str = "image", *, frame: int = -1, limit: int | None = None) -> np.ndarray:
        """One input (path, PIL image or array) as float32 HWC in [0, 1]; a volume model gives the prepared
        volume ``(1, X, Y, Z)`` of a NIfTI file or a DICOM series folder.

        Files are read as training read them: the checkpoint's DICOM window, JPEGs decoded at the
        smallest scale that stays >= the model's input size. ``frame``: a DICOM frame, or the series of a
        folder holding several; ``limit``: the most bytes a volume's float32 voxels may take.

        >>> Predictor.from_checkpoint("best.safetensors").load("scan.dcm").shape  # doctest: +SKIP
        (512, 512, 1)
        """
        if isinstance(item, (str, Path)):
            return self._read(str(item), frame, limit)
        if self.volume is not None:
            raise TypeError(f"A volume model takes a NIfTI file or a DICOM series folder, not {type(item).__name__}.")
        return to_unit_image(item, where)

    def _read(self, path: str, frame: int, limit: int | None = None) -> np.ndarray:
        """A file as the transform takes it: a unit image, or a prepared volume ``(1, X, Y, Z)``."""
        if self.volume is not None:
            return read_prepared(path, frame, self.volume, limit)
        return read_image(path, frame=frame, window=self.window, size_hint=self.transform.image_size)

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Unit images (or prepared volumes) -> the model input batch (float32 NCHW or NCXYZ, resized and normalised)."""
        return torch.stack([self.transform(img) for img in images]).numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Model input batch -> probabilities ``(n, n_classes)`` (temperature applied); thread-safe."""
        with self._lock:
            logits = self._forward(batch)
        return to_probs(torch.from_numpy(np.asarray(logits)), self.temperature, self.multi_label).numpy()

    def probabilities_with_ood(self, batch: np.ndarray) -> np.ndarray:
        """Model input batch -> ``(n, n_classes + 1)``: the probabilities, then the OOD score (NaN without statistics).

        With the PyTorch backend one forward pass gives both; with ONNX the features take a PyTorch pass.
        """
        if self.ood is None:
            return np.column_stack([self.probabilities(batch), np.full(len(batch), np.nan)])
        with self._lock, torch.inference_mode():
            logits, _, features = forward_with_features(self.model, torch.from_numpy(np.asarray(batch)).to(self.device),
                                                        self.ood.lowpass)
            if self.backend != "torch":
                logits = torch.from_numpy(np.asarray(self._forward(batch)))
        probs = to_probs(logits.float().cpu(), self.temperature, self.multi_label).numpy()
        return np.column_stack([probs, self.ood.scores(features.float().cpu().numpy())])

    def decide(self, probs: np.ndarray) -> list[str]:
        """Class names: ``classes[1]`` when ``p >= threshold`` (binary), else the argmax; multi-label: the
        present findings joined by ``|`` (``none`` when there is none).

        >>> p.decide(np.array([[0.7, 0.3], [0.2, 0.8]]))  # threshold 0.4  # doctest: +SKIP
        ['NORMAL', 'PNEUMONIA']
        """
        probs = np.asarray(probs)
        if self.multi_label:
            return ["|".join(c for c, on in zip(self.classes, row) if on) or "none" for row in self.present(probs)]
        if self.binary:
            index = (probs[:, 1] >= self.threshold).astype(int)
        else:
            index = probs.argmax(axis=1)
        return [self.classes[i] for i in index]

    # -- public predict API -----------------------------------------------------------------------
    def predict_proba(self, images_or_paths: Any, batch_size: int = 32) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` for paths, PIL images or arrays (a 4-D array is a batch).

        Raises :class:`~medclass.errors.ImageReadError` for an unreadable file and ``ValueError`` for
        an array outside the pixel convention (use :meth:`predict_files` to collect errors instead).

        >>> p.predict_proba(np.random.rand(2, 64, 64, 1).astype(np.float32)).shape  # doctest: +SKIP
        (2, 2)
        """
        items = image_batch(images_or_paths)
        out = [np.zeros((0, len(self.classes)), np.float32)]
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            images = [self.load(x, f"image {start + i}") for i, x in enumerate(chunk)]
            out.append(self.probabilities(self.preprocess(images)))
        return np.concatenate(out)

    def predict(self, images_or_paths: Any, batch_size: int = 32) -> list[str]:
        """Class names at the stored threshold (binary) or the argmax (more classes).

        >>> p.predict("IM-0001-0001.jpeg")  # doctest: +SKIP
        ['NORMAL']
        """
        return self.decide(self.predict_proba(images_or_paths, batch_size))

    def predict_with_ood(self, images_or_paths: Any, batch_size: int = 32) -> pd.DataFrame:
        """Like :meth:`predict`, with the out-of-distribution flag: columns ``predicted, prob_<class>..., ood_score, ood``.

        ``ood`` is True where the image looks unlike the training data, and missing (``<NA>``) when the
        checkpoint has no OOD statistics.

        >>> p.predict_with_ood(["IM-0001-0001.jpeg", "head_ct/000.png"])[["predicted", "ood"]]  # doctest: +SKIP
        """
        items = image_batch(images_or_paths)
        out = [np.zeros((0, len(self.classes) + 1), np.float32)]
        for start in range(0, len(items), batch_size):
            images = [self.load(x, f"image {start + i}") for i, x in enumerate(items[start:start + batch_size])]
            out.append(self.probabilities_with_ood(self.preprocess(images)))
        scored = np.concatenate(out)
        df = pd.DataFrame({"predicted": self.decide(scored[:, :-1]) if len(scored) else []})
        for k, name in enumerate(self.classes):
            df[f"prob_{name}"] = scored[:, k]
        df["ood_score"], df["ood"] = scored[:, -1], self.ood_flags(scored[:, -1])
        return df

    def is_ood(self, score: float) -> bool | None:
        """One image's flag: its OOD score above the threshold; None without statistics (or a NaN score)."""
        return None if self.ood is None or np.isnan(score) else bool(score > self.ood.threshold)

    def ood_flags(self, scores: np.ndarray) -> pd.Series:
        """``scores`` above the OOD threshold (nullable booleans: ``<NA>`` for NaN scores or without statistics)."""
        scores = np.asarray(scores, np.float64)
        flags = pd.Series(pd.array([pd.NA] * len(scores), dtype="boolean"))
        if self.ood is not None:
            known = ~np.isnan(scores)
            flags[known] = scores[known] > self.ood.threshold
        return flags

    def predict_files(self, paths: str | Path | Iterable[str | Path], batch_size: int = 32, progress: bool = True,
                      manifest: DataConfig | None = None) -> pd.DataFrame:
        """Predict every image under ``paths`` (files, folders, CSV/TSV manifests, DICOM) in batches.

        Returns one row per image or DICOM frame with the columns ``path, frame, patient,
        prob_<class>... , predicted, threshold, ood_score, ood, error`` (``ood``: see
        :meth:`predict_with_ood`) and, for a manifest, its metadata columns
        (``manifest`` = the data settings a CSV is read with: image root, columns, ``where``, ``label_map``). An unreadable file gets a row with the
        reason in ``error`` (and empty probabilities); the run goes on. :meth:`iter_predict_files` gives the
        same rows part by part.

        >>> df = p.predict_files(["../shared/data/dicom"], batch_size=16)  # doctest: +SKIP
        >>> df[df.error != ""].error.iloc[0]  # doctest: +SKIP
        'no pixel data in this DICOM file (truncated file, or a non-image object)'
        """
        return pd.concat(list(self.iter_predict_files(paths, batch_size, progress, manifest)), ignore_index=True)

    def iter_predict_files(self, paths: str | Path | Iterable[str | Path], batch_size: int = 32,
                           progress: bool = True, manifest: DataConfig | None = None,
                           skip: DoneRows | None = None, part_rows: int | None = None,
                           cluster: Any = None) -> Iterator[pd.DataFrame]:
        """The rows of :meth:`predict_files`, as tables of at most ``part_rows`` (default :data:`STREAM_ROWS`) rows
        each, yielded as soon as they are computed, in the order the files are found; rows in ``skip`` (the
        :class:`~medclass.serving.prediction_file.DoneRows` of a killed run's output) are left out. Files are found one at a time
        (:func:`~medclass.serving._inputs.iter_inputs`: folders walked, manifests read in chunks), so memory stays
        that of one part however many files there are; the progress bar counts rows (the total is not known).

        ``cluster``: a Dask ``distributed.Client`` (:func:`medclass.data.cluster.open_cluster`): each part is
        predicted on a cluster worker by this checkpoint loaded there (the checkpoint and the images must be on
        storage the workers see); the parts come back in order, at most a few per worker in flight.

        >>> for part in p.iter_predict_files(["scans/"], skip=done):  # doctest: +SKIP
        ...     part.to_csv(f, header=False, index=False)
        """
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from ..data.presets import effective_patient_rule

        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        rule = effective_patient_rule(self.meta.run_config.data)
        extra = metadata_columns(paths, manifest)
        parts = _batched(iter_inputs(paths, rule, manifest, volumes=self.volume is not None), part_rows or STREAM_ROWS)
        if skip is not None and len(skip):
            parts = (kept for part in parts if (kept := _not_done(part, skip)))
        columns = (SpinnerColumn(), TextColumn("predicting: {task.completed:,.0f} rows"), TimeElapsedColumn())
        with Progress(*columns, disable=not progress, transient=True) as bar:
            task = bar.add_task("predicting", total=None)
            if cluster is None:
                tables = (self.predict_rows(part, batch_size, extra, lambda n: bar.advance(task, n)) for part in parts)
            else:
                tables = self._on_cluster(cluster, parts, batch_size, extra)
            empty = True
            for table in tables:
                if cluster is not None:
                    bar.advance(task, len(table))
                empty = False
                yield table
        if empty:
            yield self._table([], np.zeros((0, len(self.classes) + 1)), [], extra)

    def predict_rows(self, records: list[dict], batch_size: int, extra: Sequence[str] = (),
                     advance: Callable[[int], Any] | None = None) -> pd.DataFrame:
        """One part of :meth:`iter_predict_files`: rows of :func:`~medclass.serving._inputs.iter_inputs` (those with
        a ``reason`` are files that could not be listed) -> their table, read and predicted ``batch_size`` at a time;
        ``advance(n)`` is called after each batch."""
        probs = np.full((len(records), len(self.classes) + 1), np.nan, np.float64)  # + the OOD score
        errors = [r.get("reason", "") for r in records]
        todo = [i for i, e in enumerate(errors) if not e]
        for start in range(0, len(todo), batch_size):
            images, ok = [], []
            for i in todo[start:start + batch_size]:
                try:
                    images.append(self._read(records[i]["path"], records[i]["frame"]))
                    ok.append(i)
                except ImageReadError as e:
                    errors[i] = e.reason
            if ok:
                probs[ok] = self.probabilities_with_ood(self.preprocess(images))
            if advance is not None:
                advance(len(todo[start:start + batch_size]))
        if advance is not None and len(records) > len(todo):
            advance(len(records) - len(todo))
        return self._table(records, probs, errors, extra)

    def _on_cluster(self, client: Any, parts: Iterable[list[dict]], batch_size: int,
                    extra: Sequence[str]) -> Iterator[pd.DataFrame]:
        from ..data.cluster import ordered_map

        if self.checkpoint_path is None:
            raise ValueError("Prediction on a cluster loads the checkpoint on each worker: build the Predictor with "
                             "Predictor.from_checkpoint(path) (a path the workers can read), not from a model in memory.")
        source = (str(self.checkpoint_path), str(self._onnx) if self._onnx else None, str(self.device))
        jobs = ((source, part, batch_size, list(extra)) for part in parts)
        yield from ordered_map(client, predict_rows_on_worker, jobs, what="Prediction on the cluster")

    def _table(self, records: list[dict], scored: np.ndarray, errors: list[str], extra: Sequence[str]) -> pd.DataFrame:
        probs = scored[:, :-1]
        df = pd.DataFrame({"path": [r["path"] for r in records], "frame": [int(r["frame"]) for r in records],
                           "patient": [r.get("patient", "") for r in records]})
        for k, name in enumerate(self.classes):
            df[f"prob_{name}"] = probs[:, k]
        valid = ~np.isnan(probs).any(axis=1)
        predicted = np.array([""] * len(df), dtype=object)
        if valid.any():
            predicted[valid] = self.decide(probs[valid])
        df["predicted"] = predicted
        if self.multi_label:  # one decision per finding (blank for unreadable files)
            for k, name in enumerate(self.classes):
                df[f"pred_{name}"] = np.where(valid, probs[:, k] >= self.meta.finding_thresholds[k], np.nan)
        df["threshold"] = self.threshold if self.binary else np.nan
        df["ood_score"], df["ood"] = scored[:, -1], self.ood_flags(scored[:, -1])
        df["error"] = errors
        for column in extra:
            df[column] = [r.get(column, "") for r in records]  # a manifest's metadata (sex, age, view...)
        return df

    # -- explanation ------------------------------------------------------------------------------
    def explain(self, image: Any, target_class: int | None = None, method: str | None = None,
                target_layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM overlay of one image: ``(overlay uint8 HxWx3 at the image's own size, probabilities)``.

        A volume model (a NIfTI file or a DICOM series folder) gives the axial, coronal and sagittal
        slices through the CAM's peak side by side instead (:meth:`explain_volume` has the maps).

        ``target_class`` defaults to the decided class (multi-label: a finding index, default the most probable finding); ``method`` to the checkpoint's
        ``eval.cam_method`` (gradcam); ``target_layer`` to the checkpoint's ``model.target_layer``
        or the layer found automatically. The probabilities come from the predictor's backend (as in
        :meth:`predict`); the CAM runs the PyTorch model even when the backend is ONNX.

        >>> overlay, probs = p.explain("person1_virus_6.jpeg")  # doctest: +SKIP
        """
        return self._explained(image, target_class, method, target_layer, with_ood=False)

    def explain_with_ood(self, image: Any) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`explain` of the decided class and the out-of-distribution score, as the web app shows one image or
        volume: ``(overlay, probabilities, ood_score)`` (NaN without statistics).

        One model evaluation gives the probabilities and the score (:meth:`probabilities_with_ood`), the same
        numbers as :meth:`predict_with_ood`; the CAM adds its own forward and backward pass.
        """
        overlay, scored = self._explained(image, None, None, None, with_ood=True)
        return overlay, scored[:-1], float(scored[-1])

    def _explained(self, image: Any, target_class: int | None, method: str | None, target_layer: str | None,
                   with_ood: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(overlay or orthogonal views, probabilities [+ OOD score])`` of one image or volume."""
        from ..explain.cam import overlay_cam

        if self.volume is not None:
            prepared = image if isinstance(image, np.ndarray) else self.load(image)
            cam, scored = self._cam(prepared, target_class, method, target_layer, with_ood)
            found = self._volume_explanation(prepared, cam, scored[:len(self.classes)])
            return found.views, scored
        unit = self.load(image)
        cam, scored = self._cam(unit, target_class, method, target_layer, with_ood)
        return overlay_cam(unit, cam[0]), scored  # the square map is stretched back like the input was

    def explain_volume(self, path: str | Path | np.ndarray, target_class: int | None = None, method: str | None = None,
                       target_layer: str | None = None) -> VolumeExplanation:
        """Grad-CAM of one volume (a NIfTI file or a DICOM series folder, or a volume already prepared by
        :meth:`load`: ``(1, X, Y, Z)``, e.g. an upload) prepared as the checkpoint says.

        Returns its :class:`VolumeExplanation`: the prepared volume and its CAM ``(X, Y, Z)``, the
        probabilities, a slice montage and the three orthogonal views through the CAM's peak
        (:mod:`medclass.explain.volume`; 2.5-D models: the CAM lies on the stacked slices only).

        >>> p.explain_volume("nodule.nii.gz").views.shape   # doctest: +SKIP
        (206, 612, 3)
        """
        if self.volume is None:
            raise TypeError("explain_volume needs a volume model (CT/MRI); this checkpoint takes 2-D images: use explain().")
        prepared = path if isinstance(path, np.ndarray) else self.load(path)
        cam, probs = self._cam(prepared, target_class, method, target_layer, with_ood=False)
        return self._volume_explanation(prepared, cam, probs)

    def _volume_explanation(self, prepared: np.ndarray, cam: np.ndarray, probs: np.ndarray) -> VolumeExplanation:
        from ..explain.volume import orthogonal_views, slice_montage, stack_cam

        cam = stack_cam(cam, self.volume)[0]
        volume = np.asarray(prepared, dtype=np.float32)[0]
        return VolumeExplanation(volume, cam, probs, slice_montage(volume, cam), orthogonal_views(volume, cam))

    def _cam(self, unit: np.ndarray, target_class: int | None, method: str | None, target_layer: str | None,
             with_ood: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(CAM of the model input, probabilities [+ OOD score with with_ood])`` of one loaded image or prepared volume.

        The probabilities (and score) come from one model evaluation (:meth:`probabilities` or
        :meth:`probabilities_with_ood`); the CAM's layer is resolved once per input shape, so a CAM costs its
        own forward and backward pass only.
        """
        from ..explain.cam import compute_cam

        config = self.meta.run_config
        method = method or config.eval.cam_method
        batch = self.preprocess([unit])
        scored = (self.probabilities_with_ood if with_ood else self.probabilities)(batch)[0]
        probs = scored[:len(self.classes)]
        if target_class is None and self.multi_label:
            target_class = int(probs.argmax())
        elif target_class is None:
            target_class = self.classes.index(self.decide(probs[None])[0])
        x = torch.from_numpy(batch).to(self.device)
        with self._lock:
            layer = self._cam_layer(x, target_layer or config.model.target_layer or None)
            cam = compute_cam(self.model, x, target_class=target_class, method=method, target_layer=layer)
        return cam, scored

    def _cam_layer(self, x: torch.Tensor, target_layer: str | None) -> torch.nn.Module:
        """The CAM layer for inputs shaped like ``x`` (:func:`~medclass.explain.cam.cam_layer`), resolved once per shape."""
        from ..explain.cam import cam_layer

        key = (target_layer, tuple(x.shape[1:]))
        if key not in self._cam_layers:
            self._cam_layers[key] = cam_layer(self.model, x, target_layer)
        return self._cam_layers[key]


@dataclass(frozen=True)
class VolumeExplanation:
    """The Grad-CAM of one volume (:meth:`Predictor.explain_volume`)."""

    volume: np.ndarray  # the prepared volume (X, Y, Z) in [0, 1], as the model saw it before normalisation
    cam: np.ndarray  # the CAM (X, Y, Z) in [0, 1]
    probs: np.ndarray  # class probabilities
    montage: np.ndarray  # uint8 RGB: evenly spaced axial slices, the same with the CAM, a colour scale
    views: np.ndarray  # uint8 RGB: axial, coronal and sagittal slices through the CAM's peak


def _not_done(part: list[dict], done: DoneRows) -> list[dict]:
    finished = done.mask([r["path"] for r in part], [r["frame"] for r in part])
    return [r for r, seen in zip(part, finished) if not seen]


def _batched(rows: Iterable[dict], n: int) -> Iterator[list[dict]]:
    """Lists of ``n`` rows (the last one shorter); ``itertools.batched`` from Python 3.12."""
    it = iter(rows)
    while part := list(islice(it, n)):
        yield part


@functools.lru_cache(maxsize=2)
def _worker_predictor(checkpoint: str, onnx: str | None, device: str) -> Predictor:
    return Predictor.from_checkpoint(checkpoint, device=device, onnx=onnx)


def predict_rows_on_worker(source: tuple[str, str | None, str], records: list[dict], batch_size: int,
                           extra: list[str]) -> pd.DataFrame:
    """:meth:`Predictor.predict_rows` in a cluster worker; ``source`` = (checkpoint, onnx file or None, device), loaded
    once per worker process."""
    return _worker_predictor(*source).predict_rows(records, batch_size, extra)
