"""File-name schemes of public data sets, and what they say about patients.

Many users arrive with a folder of a well-known public set and no patient column. Several of those
sets carry the patient in the file name (Kermany ``person1234_bacteria_567.jpeg``, NIH ChestX-ray14
``00000001_000.png``, ODIR ``0_left.jpg``) or in the folders (CheXpert ``patient00001/study1/``,
MIMIC-CXR ``p10/p10000032/s50414267/``); others hold one image per patient (Montgomery, Shenzhen)
or publish no patient id at all (the COVID-19 Radiography Database). :func:`recognise_scheme`
matches a table's paths against :data:`KNOWN_SCHEMES` (vectorised, one regex pass over the
names) and says which rule or preset applies.

:func:`name_prefixes` is the fallback when nothing is known: the file name without its last
number (``IM-0115-0001`` -> ``IM-0115``, ``patient12_slice034`` -> ``patient12_slice``). Images sharing
such a prefix often belong to one patient; the leak audit counts prefix groups that cross splits
as *probable* patient leaks (an estimate: it can join two patients or miss one).

Example:
    >>> m = recognise_scheme(pd.Series(["/d/NORMAL/IM-0115-0001.jpeg", "/d/PNEUMONIA/person1_virus_6.jpeg"]))
    >>> m.scheme.name, m.flags
    ('kermany_chest_xray', '--preset kermany_chest_xray')
    >>> name_prefixes(pd.Series(["IM-0115-0001.jpeg", "00000001_000.png", "scan.png"])).tolist()
    ['IM-0115', '00000001', 'scan']
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

MIN_SHARE = 0.9  # share of a table's file names that must follow a scheme for it to be recognised


@dataclass(frozen=True)
class NamingScheme:
    """The naming of one public data set: how to recognise it and where its patient ids are."""

    name: str  # short name shown to users (a data.preset name where one exists)
    description: str  # which data set, in words
    pattern: str  # regex a path must match (searched in the POSIX path, so folder names can count)
    patient_rule: str = ""  # data.patient_regex that gives the patient ('' = none in the name)
    preset: str = ""  # data.preset that applies the rule (and the set's other rules), '' = none
    one_per_patient: bool = False  # every file is a different patient: a split by image is a split by patient
    advice: str = ""  # what to do when the rule alone is not enough

    @property
    def flags(self) -> str:
        """The command-line flags that apply this scheme's patient rule ('' when it has none)."""
        if self.preset:
            return f"--preset {self.preset}"
        return f"--patient-regex '{self.patient_rule}'" if self.patient_rule else ""


KNOWN_SCHEMES: tuple[NamingScheme, ...] = (
    NamingScheme("kermany_chest_xray", "paediatric chest X-rays, Kermany et al. 2018",
                 r"(?:^|/)(?:person\d+_(?:bacteria|virus)(?:_\d+)+|(?:NORMAL\d+-)?IM-\d+(?:-\d+)+)\.jpe?g$",
                 patient_rule="chest_xray", preset="kermany_chest_xray"),
    NamingScheme("nih_chestxray14", "NIH ChestX-ray14 (Wang et al. 2017): <patient>_<follow-up>.png",
                 r"(?:^|/)\d{8}_\d{3}\.png$", patient_rule="nih_chestxray14"),
    NamingScheme("odir", "ODIR-5K fundus photographs: <patient>_<left|right>[...].jpg",
                 r"(?:^|/)\d+_(?:left|right)[^/]*\.(?:jpe?g|png)$", patient_rule="odir"),
    NamingScheme("chexpert", "CheXpert: <split>/patientNNNNN/studyN/viewN_<frontal|lateral>.jpg",
                 r"(?:^|/)patient\d+/study\d+/view\d+_\w+\.(?:jpe?g|png)$", patient_rule="chexpert"),
    NamingScheme("mimic_cxr", "MIMIC-CXR-JPG: pNN/p<subject>/s<study>/<dicom_id>.jpg",
                 r"(?:^|/)p\d{2}/p\d{8}/s\d{8}/[^/]+\.(?:jpe?g|png|dcm)$", patient_rule="mimic_cxr"),
    NamingScheme("montgomery_shenzhen", "Montgomery / Shenzhen tuberculosis chest X-rays (one image per patient)",
                 r"(?:^|/)(?:MCUCXR|CHNCXR)_\d{4}_[01]\.png$", one_per_patient=True),
    NamingScheme("isic", "ISIC skin lesion images: ISIC_NNNNNNN.jpg",
                 r"(?:^|/)ISIC_\d{7}[^/]*\.(?:jpe?g|png)$",
                 advice="ISIC publishes the patient (and the lesion) in its metadata CSV: train from that CSV with "
                        "--patient-column patient_id (or lesion_id)."),
    NamingScheme("covid19_radiography", "COVID-19 Radiography Database: <class>-<n>.png",
                 r"(?:^|/)(?:COVID|Normal|Lung_Opacity|Viral Pneumonia)-\d+\.png$",
                 advice="this set publishes no patient ids and gathers images from several sources, some with several "
                        "images per patient: a split by image can leak patients; treat its test figures as optimistic."),
)

# Patient rules of the schemes above that are not a data preset's (data.patient_regex accepts their names).
SCHEME_RULES: dict[str, str] = {
    "nih_chestxray14": r"^(\d{8})_\d{3}\.",
    "odir": r"^(\d+)_(?:left|right)",
    "chexpert": r"(?:^|/)(patient\d+)/study\d+/",
    "mimic_cxr": r"(?:^|/)p\d{2}/(p\d{8})/s\d{8}/",
}
PATH_RULES = frozenset({"chexpert", "mimic_cxr"})  # rules searched in the whole path (the patient is a folder)


@dataclass(frozen=True)
class SchemeMatch:
    """A scheme recognised in a table: how many of its paths follow it."""

    scheme: NamingScheme
    matched: int  # paths that follow the scheme
    total: int  # paths looked at

    @property
    def flags(self) -> str:
        """Flags that apply the scheme's patient rule ('' when the scheme carries none)."""
        return self.scheme.flags

    def describe(self) -> str:
        """One sentence: the scheme, how many names follow it, and what it means for patients."""
        s = self.scheme
        head = f"{self.matched} of {self.total} file names follow the {s.name} scheme ({s.description})"
        if s.patient_rule:
            return f"{head}; its names carry the patient id ({self.flags})."
        if s.one_per_patient:
            return f"{head}; that set holds one image per patient, so a split by image is a split by patient."
        return f"{head}; {s.advice}"

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {"scheme": self.scheme.name, "matched": self.matched, "total": self.total, "flags": self.flags,
                "patient_rule": self.scheme.patient_rule, "preset": self.scheme.preset, "description": self.describe()}


def _posix(paths: pd.Series) -> pd.Series:
    return paths.astype(str).str.replace("\\", "/", regex=False)


def recognise_scheme(paths: pd.Series, min_share: float = MIN_SHARE) -> SchemeMatch | None:
    """The known scheme that at least ``min_share`` of ``paths`` follow (the best one), else None.

    >>> recognise_scheme(pd.Series(["a/00000013_005.png", "a/00000013_006.png"])).scheme.name
    'nih_chestxray14'
    >>> recognise_scheme(pd.Series(["a/x.png"])) is None
    True
    """
    posix = _posix(paths)
    if posix.empty:
        return None
    best: SchemeMatch | None = None
    for scheme in KNOWN_SCHEMES:
        matched = int(posix.str.contains(scheme.pattern, regex=True, case=False).sum())
        if matched >= min_share * len(posix) and (best is None or matched > best.matched):
            best = SchemeMatch(scheme, matched, len(posix))
    return best


_LAST_NUMBER = r"[-_. ]*\d+[^/\d]*$"  # the last run of digits, its separator and what follows it (extension...)


def name_prefixes(paths: pd.Series, numbered_only: bool = False) -> pd.Series:
    """Each file name without its extension and its last number, when the name holds two or more numbers.

    A name with one number or none (``scan_17.png``, ``ISIC_0000001.jpg``) is its own prefix, so a set
    of one image per patient forms no groups; with ``numbered_only`` such names get '' (the same file
    name in two folders is then not taken for one patient).

    >>> name_prefixes(pd.Series(["person12_bacteria_3.jpeg", "NORMAL2-IM-0012-0001.jpeg", "0_left.jpg"])).tolist()
    ['person12_bacteria', 'NORMAL2-IM-0012', '0_left']
    """
    names = _posix(paths).str.rsplit("/", n=1).str[-1]
    stems = names.str.replace(r"\.[A-Za-z0-9]{1,5}(?:\.gz)?$", "", regex=True)
    several = stems.str.count(r"\d+") >= 2
    return stems.where(~several, stems.str.replace(_LAST_NUMBER, "", regex=True)).where(several | (not numbered_only), "")


__all__ = ["KNOWN_SCHEMES", "NamingScheme", "SchemeMatch", "SCHEME_RULES", "name_prefixes", "recognise_scheme"]
