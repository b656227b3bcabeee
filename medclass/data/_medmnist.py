"""The MedMNIST v2/v3 2D files on Zenodo (record 10519652): sizes, classes, licences and MD5 checksums.

Transcribed from the ``INFO`` table of the ``medmnist`` package 3.0.2 (``medmnist/info.py``), which
publishes one URL and one MD5 per file; the files are ``<flag>.npz`` (28 px) and
``<flag>_<size>.npz`` (64, 128, 224 px). Citation: Yang et al., "MedMNIST v2 - A large-scale
lightweight benchmark for 2D and 3D biomedical image classification", Scientific Data 10, 41 (2023).
"""
from __future__ import annotations

from dataclasses import dataclass

ZENODO_RECORD = "https://zenodo.org/records/10519652/files"
CITATION = ("Yang J, Shi R, Wei D, et al. MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical "
            "image classification. Scientific Data 10, 41 (2023). doi:10.1038/s41597-022-01721-8; "
            "Zenodo doi:10.5281/zenodo.10519652")
SIZES = (28, 64, 128, 224)


@dataclass(frozen=True)
class MedMNISTSet:
    """One MedMNIST 2D data set: what it holds and the MD5 of its file at each size."""

    flag: str  # file stem on Zenodo, e.g. 'pneumoniamnist'
    title: str  # what the images are
    channels: int  # 1 (grayscale) or 3 (RGB)
    images: int  # train + val + test
    licence: str
    classes: tuple[str, ...]  # class names in label order (0, 1, ...)
    md5: tuple[str, str, str, str]  # MD5 of the 28, 64, 128 and 224 px files
    multi_label: bool = False  # labels are (n, k) 0/1 findings (read as multi-label data)


_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
           "lung-right", "pancreas", "spleen")

MEDMNIST: tuple[MedMNISTSet, ...] = (
    MedMNISTSet("pathmnist", "colorectal cancer histology patches (9 tissues)", 3, 107180, "CC BY 4.0",
                ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
                 "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
                ("a8b06965200029087d5bd730944a56c1", "55aa9c1e0525abe5a6b9d8343a507616",
                 "ac42d08fb904d92c244187169d1fd1d9", "2c51a510bcdc9cf8ddb2af93af1eadec")),
    MedMNISTSet("chestmnist", "NIH ChestX-ray14 chest X-rays (14 findings, multi-label)", 1, 112120, "CC BY 4.0",
                ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                 "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"),
                ("02c8a6516a18b556561a56cbdd36c4a8", "9de6cd0b934ebb5b7426cfba5efbae16",
                 "db107e5590b27930b62dbaf558aebee3", "45bd33e6f06c3e8cdb481c74a89152aa"), multi_label=True),
    MedMNISTSet("dermamnist", "dermatoscopic images of pigmented skin lesions (HAM10000, 7 classes)", 3, 10015,
                "CC BY-NC 4.0",
                ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                 "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"),
                ("0744692d530f8e62ec473284d019b0c7", "b70a2f5635c6199aeaa28c31d7202e1f",
                 "2defd784463fa5243564e855ed717de1", "8974907d8e169bef5f5b96bc506ae45d")),
    MedMNISTSet("octmnist", "retinal OCT scans (4 classes)", 1, 109309, "CC BY 4.0",
                ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
                ("c68d92d5b585d8d81f7112f81e2d0842", "e229e9440236b774d9f0dfef9d07bdaf",
                 "0a97e76651ace45c5d943ee3f65b63ae", "abc493b6d529d5de7569faaef2773ba3")),
    MedMNISTSet("pneumoniamnist", "paediatric chest X-rays, normal vs pneumonia (Kermany et al.)", 1, 5856,
                "CC BY 4.0", ("normal", "pneumonia"),
                ("28209eda62fecd6e6a2d98b1501bb15f", "8f4eceb4ccffa70c672198ea285246c6",
                 "05b46931834c231683c68f40c47b2971", "d6a3c71de1b945ea11211b03746c1fe1")),
    MedMNISTSet("retinamnist", "fundus photographs, diabetic retinopathy grade 0-4", 3, 1600, "CC BY 4.0",
                ("0", "1", "2", "3", "4"),
                ("bd4c0672f1bba3e3a89f0e4e876791e4", "afda852cc34dcda56f86ad2b2457dbcc",
                 "e48e916a24454daf90583d4e6efb1a18", "eae7e3b6f3fcbda4ae613ebdcbe35348")),
    MedMNISTSet("breastmnist", "breast ultrasound, malignant vs normal/benign", 1, 780, "CC BY 4.0",
                ("malignant", "normal, benign"),
                ("750601b1f35ba3300ea97c75c52ff8f6", "742edef2a1fd1524b2efff4bd7ba9364",
                 "363e4b3f8d712e9b5de15470a2aaadf1", "b56378a6eefa9fed602bb16d192d4c8b")),
    MedMNISTSet("bloodmnist", "blood cell microscopy (8 cell types)", 3, 17092, "CC BY 4.0",
                ("basophil", "eosinophil", "erythroblast",
                 "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
                 "neutrophil", "platelet"),
                ("7053d0359d879ad8a5505303e11de1dc", "2b94928a2ae4916078ca51e05b6b800b",
                 "adace1e0ed228fccda1f39692059dd4c", "b718ff6835fcbdb22ba9eacccd7b2601")),
    MedMNISTSet("tissuemnist", "kidney cortex cells (8 classes)", 1, 236386, "CC BY 4.0",
                ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
                 "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                 "Thick Ascending Limb"),
                ("ebe78ee8b05294063de985d821c1c34b", "123ece2eba09d0aa5d698fda57103344",
                 "61b955355d7425a89687b06cca3ce0c2", "b077128c4a949f0a4eb01517f9037b9c")),
    MedMNISTSet("organamnist", "abdominal CT, axial slices (11 organs)", 1, 58830, "CC BY 4.0", _ORGANS,
                ("68e3f8846a6bd62f0c9bf841c0d9eacc", "2dcccc29b88e6da5a01161ef20cda288",
                 "eeae80d0a227a8d099027e1b3cfd3b60", "50747347e05c87dd3aaf92c49f9f3170")),
    MedMNISTSet("organcmnist", "abdominal CT, coronal slices (11 organs)", 1, 23583, "CC BY 4.0", _ORGANS,
                ("b9ceb9546e10131b32923c5bbeaea2b1", "3ce34a8724ea6f548e6db4744d03b6a9",
                 "773c1f009daa3fe5d9a2a201b2a7ed94", "050f5e875dc056f6768abf94ec9995d1")),
    MedMNISTSet("organsmnist", "abdominal CT, sagittal slices (11 organs)", 1, 25211, "CC BY 4.0", _ORGANS,
                ("9ab87b696fb54e2a387ebe992d6ed5f1", "53a6d115339d874c25e309a994ff46d3",
                 "ded0c5fa01a95dc4978b956f613e9b8e", "b354719e553fbbb2513d5533f52a4cb1")),
)


def file_name(flag: str, size: int) -> str:
    """The Zenodo file name of ``flag`` at ``size`` px (28 px files carry no size suffix)."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
