"""Build small RPU 2006 files for tests, item by item (the synthetic generator makes big realistic ones)."""
from __future__ import annotations

from xml.sax.saxutils import escape

GOOD_VISIT = {
    "CP": "75012", "COMMUNE": "PARIS", "NAISSANCE": "01/02/1980", "SEXE": "M", "ENTREE": "01/11/2026 10:12",
    "MODE_ENTREE": "8", "PROVENANCE": "5", "TRANSPORT": "PERSO", "TRANSPORT_PEC": "AUCUN", "MOTIF": "CARDIO04",
    "GRAVITE": "2", "DP": "R074", "LISTE_DA": ["I10"], "LISTE_ACTES": ["DEQP003"], "SORTIE": "01/11/2026 13:00",
    "MODE_SORTIE": "8", "DESTINATION": "", "ORIENT": "",
}


def visit(**changes) -> dict:
    v = dict(GOOD_VISIT)
    v.update(changes)
    return v


def patient_xml(v: dict) -> str:
    parts = []
    for tag, value in v.items():
        if tag in ("LISTE_DA", "LISTE_ACTES"):
            child = "DA" if tag == "LISTE_DA" else "ACTE"
            parts.append(f"<{tag}>" + "".join(f"<{child}>{escape(x)}</{child}>" for x in value) + f"</{tag}>")
        elif value is None:
            continue  # omitted element
        else:
            parts.append(f"<{tag}>{escape(value)}</{tag}>")
    return "<PATIENT>" + "".join(parts) + "</PATIENT>"


def rpu_file(visits: list[dict], *, finess="990000127", ordre="0", extract="02/11/2026 03:10:00",
             debut="26/10/2026", fin="01/11/2026", encoding="UTF-8", declaration=True,
             one_passages_per_patient=False, header_extra="") -> bytes:
    head = {"FINESS": finess, "ORDRE": ordre, "EXTRACT": extract, "DATEDEBUT": debut, "DATEFIN": fin}
    header = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in head.items() if v is not None) + header_extra
    if one_passages_per_patient:
        body = "\n".join(f"<PASSAGES>{patient_xml(v)}</PASSAGES>" for v in visits)
    else:
        body = "<PASSAGES>\n" + "\n".join(patient_xml(v) for v in visits) + "\n</PASSAGES>"
    decl = f'<?xml version="1.0" encoding="{encoding}"?>\n' if declaration else ""
    text = f"{decl}<OSCOUR>\n<ETABLISSEMENT>{header}</ETABLISSEMENT>\n{body}\n</OSCOUR>\n"
    codec = "cp1252" if encoding.upper() in ("WINDOWS-1252",) else encoding
    return text.encode(codec, errors="xmlcharrefreplace")
