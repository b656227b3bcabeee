"""Web app: upload a PNG/JPEG/DICOM, see the class probabilities, the decision, a Grad-CAM overlay
and the model card. :func:`serve` runs it together with the REST API on one port. A volume model
takes a NIfTI file (.nii, .nii.gz) or a .zip of one DICOM series and shows the prepared volume's
orthogonal mid-slices beside the decision.

Uploads go through the same checks as the API (size in pixels, decompression bombs, corrupt
files, DICOM without pixels; for volumes the zip checks of :mod:`._volume_upload`) and errors are
shown in the page. The server binds to 127.0.0.1
unless another host is given.

Only bytes a client uploaded are ever read. A Gradio request names its input file by a server
*path*; the app analyses a path only when this app's upload route wrote it (a path to any other
file, ``../`` or a symlink is refused before anything is read, copied or served), Gradio's own
upload-folder check is switched on for the mounted app (Gradio applies it only after
``launch()``), and :func:`serve` keeps uploads and previews in a private temporary folder
(mode 0700, removed at exit) instead of the shared ``/tmp/gradio``.

Example:
    >>> serve("workspace/default/resnet18/best.safetensors", port=7860)  # doctest: +SKIP
    # UI on http://127.0.0.1:7860/ ; API on /predict, /model, /health, docs on /docs
"""
from __future__ import annotations

import contextlib
import html
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from fastapi import FastAPI
from PIL import Image

from ..data.dicom import DICOM_EXTENSIONS
from ..data.io import IMAGE_EXTENSIONS
from ._card import card_markdown, model_card, saved_card
from ._gradio_bounds import bound_gradio_state
from ._upload import UploadError, decode_upload, default_upload_mb, upload_frames
from ._volume_upload import MAX_VOLUME_MB, VOLUME_SUFFIXES, VolumeLimits, check_model_takes, read_volume_upload, volume_kind
from ._volume_view import orthogonal_slices
from ._verdict import decision_line, ood_banner, probability_bars
from .predictor import Predictor

_log = logging.getLogger(__name__)
MAX_PIXELS = 50_000_000
DISPLAY_SIDE = 336  # smallest height of the images shown
ANALYSES_AT_ONCE = 4  # analyses run at the same time (Gradio's default, 1, queues every user behind one analysis)
KEEP_FILES_S = 3600  # uploads and shown images are deleted this many seconds after they were written


def create_webapp(checkpoint: str | Path | Predictor, max_pixels: int = MAX_PIXELS,
                  max_volume_mb: float = MAX_VOLUME_MB, keep_files_s: int = KEEP_FILES_S) -> gr.Blocks:
    """The Gradio UI for one checkpoint (a path or a loaded :class:`Predictor`).

    Under load: up to :data:`ANALYSES_AT_ONCE` analyses run at once (the predictor is thread-safe; Grad-CAM
    takes its lock); every upload and shown image is deleted ``keep_files_s`` seconds after it was written
    (checked every quarter of that), and what Gradio keeps per session is bounded
    (:func:`~._gradio_bounds.bound_gradio_state`), so the upload folder, Gradio's list of uploaded files and the
    memory stay bounded on a server that runs for weeks.

    What a person sees after an upload, from the top: a coloured out-of-distribution banner (when the
    image looks unlike the training images), the decision in one line (class, probability,
    threshold), then the probability bars with the threshold marked and the Grad-CAM overlay; for
    an out-of-distribution image the bars and the overlay stay hidden until asked for. A volume
    model shows the orthogonal mid-slices of the prepared volume in place of the uploaded image.

    >>> create_webapp("best.safetensors").launch(server_name="127.0.0.1")  # doctest: +SKIP
    """
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor.from_checkpoint(checkpoint)
    card = model_card(predictor.meta)
    volumes = predictor.volume is not None
    limits = VolumeLimits.from_mb(max_volume_mb)

    def analyse(file: str | None, frame: float | None) -> tuple[Any, ...]:
        if not file:
            return (gr.HTML(visible=False), "", None, "", None, gr.Column(visible=False), gr.Button(visible=False), "")
        try:
            data = _read_uploaded(file, demo.upload_file_set)
            kind = volume_kind(data, Path(file).name)
            check_model_takes(kind, volumes)
            n_frames = 1 if kind else upload_frames(data, Path(file).name)
            k = max(int(frame or 1), 1)
            if k > n_frames:
                raise UploadError(422, f"This file has {n_frames} frame(s): pick a frame from 1 to {n_frames}.")
            if kind:  # read and prepared as `medclass predict` reads a NIfTI file or a series folder
                image = read_volume_upload(data, Path(file).name, predictor.load, limits=limits)
            else:
                image = decode_upload(data, Path(file).name, None, window=predictor.window,
                                      frame=k - 1 if n_frames > 1 else -1, max_pixels=max_pixels,
                                      size_hint=predictor.transform.image_size)
        except UploadError as e:  # the user's file, not a server fault: one line in the server log
            raise _refused(Path(file).name, e.message) from None
        shown = analysis(predictor, image)
        seen = orthogonal_slices(image) if volumes else _to_uint8(image)
        return (gr.HTML(shown.banner, visible=shown.flagged), f"<p style='font-size:1.3em;margin:0'><strong>Decision:"
                f"</strong> {html.escape(shown.decision)}</p>", _display(seen), shown.bars,
                gr.Image(None if shown.overlay is None else _display(shown.overlay), visible=shown.overlay is not None),
                gr.Column(visible=not shown.flagged), gr.Button(visible=shown.flagged),
                f"Frame {k} of {n_frames}" if n_frames > 1 else "")

    what = ("Analysis starts on upload: choose or drop a CT/MRI volume, a NIfTI file (.nii, .nii.gz) or a .zip "
            "holding the files of one DICOM series, and the result appears here, the decision first, beside the "
            "volume's axial, coronal and sagittal mid-slices. Programs can use the REST API instead: `POST /predict` "
            "with the file in the form field `file` (see [/docs](/docs))." if volumes else
            "Analysis starts on upload: choose or drop a PNG, JPEG, TIFF or DICOM file and the result "
            "appears here, the decision first. Programs can use the REST API instead: `POST /predict` "
            "with the image in the form field `file` (see [/docs](/docs)).")
    # '.gz' too: some browsers match only the last extension of '.nii.gz' in the file dialog
    accepted = [*VOLUME_SUFFIXES, ".gz"] if volumes else list(IMAGE_EXTENSIONS + DICOM_EXTENSIONS)

    with gr.Blocks(title=f"medclass: {', '.join(predictor.classes)}", analytics_enabled=False,
                   delete_cache=(max(keep_files_s // 4, 1), keep_files_s)) as demo:
        gr.Markdown(f"## medclass: {' / '.join(predictor.classes)} classifier\n**{card['disclaimer']}**\n\n{what}",
                    elem_id="intro")
        banner = gr.HTML(visible=False, elem_id="ood-banner")
        decision = gr.HTML(elem_id="decision")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="NIfTI file (.nii, .nii.gz) or .zip of one DICOM series" if volumes else
                                 "Image or DICOM file", file_types=accepted, type="filepath", elem_id="upload")
                _file_type_refusal_in_one_line(upload)
                frame = gr.Number(value=1, precision=0, minimum=1, maximum=100_000, visible=not volumes,
                                  label="Frame of a multi-frame DICOM (1 = first; press Enter)", elem_id="frame")
                frame_info = gr.Markdown(elem_id="frame-info")
                preview = gr.Image(label="Axial, coronal and sagittal mid-slices (as the model sees the volume)"
                                   if volumes else "Uploaded image", type="numpy", interactive=False,
                                   height=DISPLAY_SIDE + 24, elem_id="preview")
            with gr.Column():
                show = gr.Button("Show the probabilities and Grad-CAM anyway", visible=False, elem_id="show-anyway")
                with gr.Column(visible=False) as details:
                    bars = gr.HTML(elem_id="probs")
                    overlay = gr.Image(label="Grad-CAM overlay (where the model looked)", type="numpy",
                                       interactive=False, height=DISPLAY_SIDE + 24, elem_id="overlay")
        # evaluate's model_card.md (held-out results with CIs) when saved beside the checkpoint
        gr.Markdown(saved_card(predictor.checkpoint_path) or card_markdown(card), elem_id="card")
        outputs = [banner, decision, preview, bars, overlay, details, show, frame_info]
        at_once = dict(concurrency_limit=ANALYSES_AT_ONCE, concurrency_id="analyse")  # one limit for both events
        upload.change(analyse, inputs=[upload, frame], outputs=outputs, api_visibility="undocumented", **at_once)
        frame.submit(analyse, inputs=[upload, frame], outputs=outputs, api_visibility="undocumented", **at_once)
        show.click(lambda: (gr.Column(visible=True), gr.Button(visible=False)), outputs=[details, show],
                   api_visibility="private")
    bound_gradio_state(demo, upload.GRADIO_CACHE)
    return demo


def _refused(name: str, message: str) -> gr.Error:
    """The page's error for an uploaded file that cannot be analysed, reported in one warning line in the server
    log (the user's file, not a server fault: the traceback only when this module logs at DEBUG, as with
    ``medclass --debug serve``)."""
    _log.warning("refused the upload %r: %s", name, message, exc_info=_log.isEnabledFor(logging.DEBUG))
    return gr.Error(message, print_exception=False)


def _file_type_refusal_in_one_line(upload: gr.File) -> None:
    """Report ``upload``'s refusal of a file type it does not accept as :func:`_refused` does, instead of the
    traceback that Gradio's queue prints for it (``gr.File.preprocess`` raises a ``gr.Error`` that prints one).

    The component's own ``preprocess`` is wrapped: a ``gr.File`` subclass would do the same, but Gradio writes a
    ``.pyi`` stub beside the module of every component subclass, at import.
    """
    preprocess = upload.preprocess

    def checked(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except gr.Error as e:  # Gradio 6 raises only the file-type check's Error here
            raise _refused(Path(getattr(payload, "orig_name", None) or "").name or "?", str(e.message)) from None

    upload.preprocess = checked


@dataclass(frozen=True)
class Analysis:
    """What the page shows for one image, from the top."""

    banner: str  # HTML of the out-of-distribution banner ('' when the image is in distribution or not scored)
    decision: str  # the decision in one line: class, probability, threshold
    bars: str  # HTML probability bars with the threshold marked
    overlay: np.ndarray | None  # Grad-CAM overlay (RGB uint8); a volume: orthogonal slices through the CAM's peak
    flagged: bool  # out-of-distribution: bars and overlay are held back until asked for


def analysis(predictor: Predictor, image: np.ndarray) -> Analysis:
    """The page's view of one unit image (HWC in [0, 1]) or prepared volume ``(1, X, Y, Z)`` (a volume model).

    >>> analysis(Predictor.from_checkpoint("best.safetensors"), image).decision  # doctest: +SKIP
    'NORMAL: P(PNEUMONIA) = 0.352 < threshold 0.400'
    """
    # one model evaluation gives the probabilities and the OOD score, the CAM its own forward and backward pass;
    # a volume's overlay: the axial, coronal and sagittal slices through the 3-D Grad-CAM's peak
    overlay, probs, score = predictor.explain_with_ood(image)
    flagged = bool(predictor.is_ood(score))
    line = decision_line(predictor.decision_rule, probs)
    return Analysis(banner=ood_banner(score, predictor.ood.threshold) if flagged else "",
                    decision=line + (" (unreliable: out-of-distribution)" if flagged else ""),
                    bars=probability_bars(predictor.decision_rule, probs), overlay=overlay, flagged=flagged)


def volume_analysis(predictor: Predictor, path: str | Path) -> Analysis:
    """The page's view of one CT/MRI volume (a NIfTI file or a DICOM series folder) for a volume model: the
    decision and bars as for an image, and as the overlay the axial, coronal and sagittal slices through the
    Grad-CAM's peak (:meth:`Predictor.explain_volume`).

    >>> volume_analysis(Predictor.from_checkpoint("best.safetensors"), "nodule.nii.gz").overlay.shape  # doctest: +SKIP
    (206, 612, 3)
    """
    return analysis(predictor, predictor.load(path))


def _read_uploaded(path: str, uploaded: set[str]) -> bytes:
    """The bytes of a file that this app's upload route wrote, else :class:`UploadError` (403).

    A client names its input by a server path; only the exact paths that Gradio's upload route
    returned (absolute, normalised) are accepted (no other file, no ``../``), and the final component must not
    be a symlink (``O_NOFOLLOW``).
    """
    # set lookups, never a pass over the set: Gradio's upload route and its deletion round change it meanwhile
    # (iterating it in this worker thread failed once in ~5,000 analyses with "Set changed size during iteration")
    if path not in uploaded and os.path.abspath(path) not in uploaded:
        raise UploadError(403, "Only files uploaded through this page can be analysed; upload the image again.")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        raise UploadError(403, "The uploaded file is no longer available; upload the image again.") from None
    with os.fdopen(fd, "rb") as file:
        return file.read()


def _to_uint8(image: np.ndarray) -> np.ndarray:
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    return (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _display(rgb: np.ndarray) -> np.ndarray:
    """Small images (e.g. JPEGs decoded at reduced scale for a small model) enlarged for the screen."""
    height, width = rgb.shape[:2]
    if height >= DISPLAY_SIDE:
        return rgb
    size = (round(width * DISPLAY_SIDE / height), DISPLAY_SIDE)
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def create_app(checkpoint: str | Path | Predictor, api: bool = True, keep_files_s: int = KEEP_FILES_S,
               **api_options: Any) -> FastAPI:
    """One FastAPI app: the REST API (when ``api``) with the Gradio UI mounted at ``/``
    (``keep_files_s``: see :func:`create_webapp`; ``api_options``: those of :func:`~.api.create_api`).

    Build it inside :func:`private_upload_folder` (as :func:`serve` does) to keep uploads and
    previews out of the shared ``/tmp/gradio``.

    >>> app = create_app("best.safetensors")  # doctest: +SKIP
    """
    from .api import create_api

    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor.from_checkpoint(checkpoint)
    app = create_api(predictor, **api_options) if api else FastAPI(title="medclass")
    demo = create_webapp(predictor, api_options.get("max_pixels", MAX_PIXELS),
                         api_options.get("max_volume_mb", MAX_VOLUME_MB), keep_files_s)
    upload_mb = api_options.get("max_upload_mb") or default_upload_mb(predictor.volume is not None)
    max_bytes = int(upload_mb * 2**20)
    # no "Use via API" footer: it documents the page's internal events; the REST API is /predict (see /docs)
    app = gr.mount_gradio_app(app, demo, path="/", footer_links=[], max_file_size=max_bytes, allowed_paths=[])
    # Gradio checks that an input file was uploaded (is in its upload folder) only once the Blocks
    # has "launched"; a mounted app never launches, so without this any server path is accepted.
    demo.has_launched = True
    return app


def serve(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 7860, api: bool = True,
          debug: bool = False) -> None:
    """Run the web app (and the REST API) with uvicorn until interrupted; binds to 127.0.0.1 by default.

    What a user causes (a refused upload, a client that leaves mid-request) is one warning line in the log,
    with its traceback only when ``debug``; a server fault always logs its traceback. The process's malloc
    arenas are capped first (:func:`~._allocator.tune_malloc`; ``MALLOC_ARENA_MAX`` overrides).

    >>> serve("best.safetensors", port=8080, api=False)  # doctest: +SKIP
    """
    import uvicorn

    from ._allocator import tune_malloc
    from ._server_log import uvicorn_log_config

    tune_malloc()  # before the server's threads start: memory flat under load (see _allocator)
    if debug:
        _log.setLevel(logging.DEBUG)
    with private_upload_folder():
        uvicorn.run(create_app(checkpoint, api=api), host=host, port=port, log_level="info",
                    log_config=uvicorn_log_config(debug))


@contextlib.contextmanager
def private_upload_folder() -> Iterator[Path]:
    """Point Gradio's upload and output folder (``GRADIO_TEMP_DIR``) at a fresh private folder
    (mode 0700) for the duration, and remove it afterwards; a folder the user chose is kept.

    Create the app inside the block: Gradio reads the folder when its components are built.

    >>> with private_upload_folder() as folder:  # doctest: +SKIP
    ...     uvicorn.run(create_app("best.safetensors"))
    """
    chosen = os.environ.get("GRADIO_TEMP_DIR")
    if chosen:
        yield Path(chosen)
        return
    with tempfile.TemporaryDirectory(prefix="medclass-serve-") as folder:
        os.environ["GRADIO_TEMP_DIR"] = folder
        try:
            yield Path(folder)
        finally:
            os.environ.pop("GRADIO_TEMP_DIR", None)
