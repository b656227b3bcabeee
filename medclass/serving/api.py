"""REST API over one checkpoint: ``POST /predict``, ``GET /model``, ``GET /health`` (+ OpenAPI at ``/docs``).

``POST /predict`` takes a multipart upload (field ``file``: PNG, JPEG, TIFF, ... or DICOM; for a
volume model a NIfTI file ``.nii``/``.nii.gz`` or a ``.zip`` of one DICOM series, see
:mod:`._volume_upload`) and answers the class probabilities, the decision at the checkpoint's
threshold and, with ``?cam=true``, a Grad-CAM overlay as a base64 PNG (a volume: the axial, coronal and sagittal slices through the CAM's peak). Every bad
input is a 4xx with a JSON ``{"detail": "..."}``: 413 too large (bytes, pixels, voxels, a zip
bomb), 415 wrong content type or an image for a volume model (and the reverse), 422 empty,
non-image, corrupt or truncated data, DICOM without pixels, an unsafe or inconsistent zip.

Concurrency: uploads are decoded in FastAPI's thread pool; forward passes go through a
micro-batching queue (up to ``max_batch`` concurrent images per pass) in front of the model, and
Grad-CAM runs under the predictor's lock, so concurrent requests are safe.

Example:
    >>> app = create_api("workspace/default/resnet18/best.safetensors")  # doctest: +SKIP
    >>> # uvicorn.run(app, host="127.0.0.1", port=8000); then
    >>> # curl -F file=@IM-0001-0001.jpeg http://127.0.0.1:8000/predict   (a volume model: -F file=@scan.nii.gz)
"""
from __future__ import annotations

import base64
import io
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel, Field

from ._batcher import MicroBatcher
from ._card import model_card, saved_evaluation
from ._upload import UploadError, check_content_type, decode_upload, default_upload_mb, read_limited
from ._volume_upload import MAX_VOLUME_MB, VolumeLimits, check_model_takes, read_volume_upload, volume_kind
from .predictor import Predictor

UPLOAD_FIELD = "file"  # the multipart form field of POST /predict (the parameter name of `predict`)
_ERRORS = {
    413: "Upload too large (bytes), too many pixels or voxels, or a zip bomb",
    415: "Content type is not an image, DICOM, NIfTI or zip; an image for a volume model or a volume for a 2-D model",
    422: "Empty, non-image, corrupt or truncated file; DICOM without pixel data; a zip with unsafe paths, links, nested "
         "archives or not exactly one complete DICOM series; a 4-D or one-slice volume; invalid parameters",
}


class ErrorBody(BaseModel):
    """Every 4xx answer."""

    detail: Any = Field(description="What was wrong with the request and how to fix it.")


class PredictionBody(BaseModel):
    """Answer of ``POST /predict``."""

    probabilities: dict[str, float] = Field(description="Probability of each class (after temperature scaling).")
    decision: str = Field(description="Predicted class: the positive class when its probability >= threshold (binary), else the argmax.")
    threshold: float | None = Field(description="Decision threshold on the positive class (binary models; null otherwise).")
    findings: dict[str, bool] | None = Field(default=None, description="Multi-label models: whether each finding is present (p >= its threshold); null otherwise.")
    thresholds: dict[str, float] | None = Field(default=None, description="Multi-label models: the decision threshold of each finding, chosen on validation.")
    classes: list[str]
    model: str
    cam: str | None = Field(default=None, description="Grad-CAM overlay as a base64 PNG (only with cam=true).")
    ood: bool | None = Field(default=None, description="True: the image looks unlike the training data (out-of-distribution); "
                             "null when the checkpoint has no OOD statistics.")
    ood_score: float | None = Field(default=None, description="Squared Mahalanobis distance of the image's features to the "
                                    "training data (flagged above the threshold set on validation).")
    disclaimer: str


class HealthBody(BaseModel):
    """Answer of ``GET /health``."""

    status: str
    model: str
    classes: list[str]
    backend: str


def create_api(checkpoint: str | Path | Predictor, max_upload_mb: float | None = None, max_pixels: int = 50_000_000,
               max_batch: int = 16, onnx: str | Path | None = None, max_volume_mb: float = MAX_VOLUME_MB) -> FastAPI:
    """A FastAPI app serving one checkpoint (a path, or an already loaded :class:`Predictor`).

    Args:
        checkpoint: ``.safetensors`` checkpoint (pickles are refused) or a ready predictor.
        max_upload_mb: largest accepted upload in MiB (413 beyond); default 20, 256 for a volume model.
        max_pixels: largest accepted width x height (413 beyond; guards against decompression bombs).
        max_batch: most images per forward pass of the micro-batching queue.
        onnx: optional exported ONNX file to run instead of PyTorch.
        max_volume_mb: largest uploaded volume (float32 voxels) and uncompressed zip, in MiB (413 beyond).

    >>> from fastapi.testclient import TestClient  # doctest: +SKIP
    >>> TestClient(create_api("best.safetensors")).get("/health").json()["status"]  # doctest: +SKIP
    'ok'
    """
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor.from_checkpoint(checkpoint, onnx=onnx)
    max_upload_mb = default_upload_mb(predictor.volume is not None) if max_upload_mb is None else max_upload_mb
    max_bytes = int(max_upload_mb * 2**20)
    limits = VolumeLimits.from_mb(max_volume_mb)
    batcher = MicroBatcher(predictor.probabilities_with_ood, max_batch=max_batch)
    # evaluate's held-out figures when saved beside the checkpoint (a Predictor knows the path it was loaded from)
    card = model_card(predictor.meta, evaluation=saved_evaluation(predictor.checkpoint_path))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    what, example = (("CT/MRI volumes (a NIfTI file or a .zip of one DICOM series)", "scan.nii.gz")
                     if predictor.volume is not None else ("images", "image.png"))
    # /docs with Swagger UI's files served by this app (the default page loads them from a CDN: blank offline)
    app = FastAPIOffline(title="medclass", version=predictor.meta.versions.get("medclass", ""),
                         description=f"Classifier of {', '.join(predictor.classes)} {what}. Upload one in the "
                                     f"form field `{UPLOAD_FIELD}`: `curl -F {UPLOAD_FIELD}=@{example} "
                                     f"http://127.0.0.1:7860/predict`. {card['disclaimer']}",
                         redoc_url=None, lifespan=lifespan)
    app.state.predictor, app.state.batcher = predictor, batcher
    app.add_middleware(_BodyLimit, max_bytes=max_bytes + 64 * 1024, limit_mb=max_upload_mb)  # + multipart framing

    @app.exception_handler(UploadError)
    async def upload_error(request, exc: UploadError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.message})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": request_problem(exc.errors())})

    @app.get("/predict", include_in_schema=False)
    def predict_needs_post() -> JSONResponse:
        return JSONResponse(status_code=405, headers={"Allow": "POST"}, content={"detail": (
            f"Use POST with the image as a multipart upload in the form field '{UPLOAD_FIELD}', e.g. "
            f"curl -F {UPLOAD_FIELD}=@image.png <server>/predict")})

    @app.get("/health", response_model=HealthBody)
    def health() -> dict[str, Any]:
        """Liveness: the model is loaded."""
        return {"status": "ok", "model": predictor.meta.model.name, "classes": predictor.classes,
                "backend": predictor.backend}

    @app.get("/model")
    def model() -> dict[str, Any]:
        """Model card: classes, preprocessing, threshold, metrics, intended use ("not a medical device")."""
        return card

    @app.post("/predict", response_model=PredictionBody,
              responses={k: {"model": ErrorBody, "description": v} for k, v in _ERRORS.items()})
    def predict(
        file: UploadFile = File(alias=UPLOAD_FIELD, description="Image (PNG, JPEG, TIFF, BMP, ...) or DICOM file; for a "
                                "volume model a NIfTI file (.nii, .nii.gz) or a .zip of one DICOM series."),
        cam: bool = Query(False, description="Also return a Grad-CAM overlay (base64 PNG; a volume: orthogonal slices through the CAM peak)."),
        frame: int = Query(-1, ge=-1, le=100_000, description="Frame of a multi-frame DICOM, or the series (0, 1, ...) of "
                           "a zip holding several (-1 = a single-frame file, a zip of one series)."),
    ) -> dict[str, Any]:
        """Classify one uploaded image, DICOM file or (volume model) CT/MRI volume."""
        check_content_type(file.content_type)
        data = read_limited(file.file, max_bytes)
        kind = volume_kind(data, file.filename)
        check_model_takes(kind, predictor.volume is not None)
        if kind:  # read and prepared exactly as `medclass predict` reads a NIfTI file or a series folder
            image = read_volume_upload(data, file.filename, predictor.load, frame=frame, limits=limits)
        else:
            image = decode_upload(data, file.filename, file.content_type, window=predictor.window, frame=frame,
                                  max_pixels=max_pixels, size_hint=predictor.transform.image_size)
        overlay = None
        scored = batcher.submit(predictor.preprocess([image])[0])
        probs, ood_score = scored[:-1], float(scored[-1])
        if cam:
            overlay_rgb, probs = predictor.explain(image)
            overlay = _png_base64(overlay_rgb)
        return {"ood": predictor.is_ood(ood_score), "ood_score": None if np.isnan(ood_score) else ood_score,
                "probabilities": dict(zip(predictor.classes, map(float, probs))),
                "decision": predictor.decide(probs[None])[0],
                "threshold": predictor.threshold if predictor.binary else None,
                **_findings(predictor, probs),
                "classes": predictor.classes, "model": predictor.meta.model.name, "cam": overlay,
                "disclaimer": card["disclaimer"]}

    return app


def request_problem(errors: list[dict[str, Any]]) -> str:
    """FastAPI's validation errors in plain words, naming the field or parameter.

    >>> request_problem([{"type": "missing", "loc": ("body", "file"), "msg": "Field required"}])
    "Missing the upload field 'file': send the image as multipart/form-data, e.g. curl -F file=@image.png <server>/predict."
    """
    problems = []
    for e in errors:
        where, name = (e.get("loc") or ("", ""))[0], str((e.get("loc") or ("", ""))[-1])
        if where == "body" and e.get("type") == "missing":
            problems.append(f"Missing the upload field '{name}': send the image as multipart/form-data, e.g. "
                            f"curl -F {name}=@image.png <server>/predict.")
        elif where == "body":
            problems.append(f"The form field '{name}' must be a file upload ({e.get('msg', 'invalid')}).")
        else:
            problems.append(f"The {where} parameter '{name}' is invalid: {e.get('msg', 'invalid value')}.")
    return " ".join(problems) or "Invalid request."


def _findings(predictor: Predictor, probs: np.ndarray) -> dict[str, Any]:
    """Multi-label answers: each finding's decision and threshold (nothing for other models)."""
    if not predictor.multi_label:
        return {}
    present = predictor.present(probs[None])[0]
    return {"findings": {c: bool(on) for c, on in zip(predictor.classes, present)},
            "thresholds": dict(zip(predictor.classes, predictor.meta.finding_thresholds))}


def _png_base64(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _BodyLimit:
    """ASGI middleware: 413 before reading a body whose Content-Length is over the limit, and while
    streaming a body without one (chunked) as soon as it goes over."""

    def __init__(self, app, max_bytes: int, limit_mb: float) -> None:
        self.app, self.max_bytes, self.limit_mb = app, max_bytes, limit_mb
        self.message = f"Upload larger than the limit of {limit_mb:g} MiB."

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and not length.isdigit():
            return await JSONResponse({"detail": "Invalid Content-Length header."}, status_code=400)(scope, receive, send)
        if length is not None and int(length) > self.max_bytes:
            detail = f"Upload of {int(length) / 2**20:.1f} MiB is larger than the limit of {self.limit_mb:g} MiB."
            return await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited_receive, send)
