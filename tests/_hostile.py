"""Hostile image files, the same set for every command that reads images (tests/test_hostile.py).

``write_hostile(folder)`` writes, among good images made by the caller:

* unreadable (each must be skipped with a one-line reason, never a traceback):
  ``bomb.png`` (a 40,000 x 40,000 PNG header over a few bytes of data: a decompression bomb),
  ``truncated.png`` (a real PNG cut in half), ``text.png`` (text named .png),
  ``huge.dcm`` (a DICOM whose header claims 60,000 x 60,000 x 1,000 frames over 64 bytes of pixels);
* readable in odd forms (each must be read, or skipped with a reason, never crash):
  ``wrong_ext.jpg`` (a PNG named .jpg), ``gray16.png`` (16-bit), ``palette.png`` (mode P),
  ``cmyk.jpg`` (a CMYK JPEG).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

UNREADABLE = ("bomb.png", "truncated.png", "text.png", "huge.dcm")
ODD_BUT_READABLE = ("wrong_ext.jpg", "gray16.png", "palette.png", "cmyk.jpg")
BOMB_SIDE = 40_000


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A grayscale PNG header of ``side`` x ``side`` pixels over one compressed row (a few hundred bytes)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * (side + 1), 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def huge_dicom(path: Path) -> None:
    """A DICOM file whose header claims 60,000 x 60,000 pixels x 1,000 frames, with 64 bytes of pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = "hostile", "OT"
    ds.Rows = ds.Columns = 60_000
    ds.NumberOfFrames = 1000
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = b"\x00" * 64
    ds.save_as(path, enforce_file_format=True)


def write_hostile(folder: Path, seed: int = 0) -> list[Path]:
    """Write the hostile files into ``folder`` (created); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    gray = (rng.random((40, 40)) * 255).astype(np.uint8)
    (folder / "bomb.png").write_bytes(bomb_png())
    Image.fromarray(gray).save(folder / "full.png")
    full = (folder / "full.png").read_bytes()
    (folder / "full.png").unlink()
    (folder / "truncated.png").write_bytes(full[: len(full) // 2])
    (folder / "text.png").write_text("this is not an image\n")
    huge_dicom(folder / "huge.dcm")
    (folder / "wrong_ext.jpg").write_bytes(full)
    Image.fromarray((gray.astype(np.uint16) * 257)).save(folder / "gray16.png")
    Image.fromarray(gray).convert("P").save(folder / "palette.png")
    Image.fromarray(np.stack([gray] * 3, -1)).convert("CMYK").save(folder / "cmyk.jpg")
    return [folder / name for name in UNREADABLE + ODD_BUT_READABLE]
