"""Every rule the concentrator applies, named once, with the words a hospital's IT team reads.

A Problem is a value (rule, message, line, visit), never a string assembled elsewhere. File rules reject the
whole file; visit rules reject one visit; quality rules only flag the stored visit (FEDORU).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

FILE, VISIT, QUALITY, WARNING = "file", "visit", "quality", "warning"

# rule → (level, description in French, shown in receipts, reports and docs)
RULES: dict[str, tuple[str, str]] = {
    "FILE_TOO_LARGE": (FILE, "fichier au-delà de la taille maximale acceptée"),
    "NAME_INVALID": (FILE, "nom de fichier illisible (octets hors UTF-8 ou caractères de contrôle)"),
    "NAME_TOO_LONG": (FILE, "nom de fichier trop long (plus de 200 octets)"),
    "NOT_A_FILE": (FILE, "entrée du dépôt qui n'est pas un fichier ordinaire (lien symbolique, répertoire…)"),
    "VISIT_TOO_LARGE": (FILE, "passage démesuré (plus de 256 Ko lus sans fin de passage)"),
    "ORDRE_OUT_OF_RANGE": (FILE, "ORDRE hors de l'intervalle 0–32767"),
    "DATABASE_REFUSED": (FILE, "contenu refusé par la base régionale"),
    "CHECK_FAILED": (FILE, "contrôle du fichier impossible (incident à l'ORU)"),
    "NOT_WELL_FORMED": (FILE, "XML mal formé (balise non fermée, caractère interdit, fichier tronqué…)"),
    "DOCTYPE_FORBIDDEN": (FILE, "déclaration DOCTYPE interdite"),
    "SCHEMA": (FILE, "structure non conforme au schéma RPU 2006"),
    "FINESS_MISSING": (FILE, "FINESS absent de l'en-tête"),
    "FINESS_UNKNOWN": (FILE, "FINESS non déclaré dans la région"),
    "FINESS_NOT_SENDER": (FILE, "FINESS d'un autre établissement que celui du dépôt"),
    "EXTRACT_MISSING": (FILE, "date d'extraction (EXTRACT) absente ou illisible"),
    "ENTREE_MISSING": (VISIT, "date d'entrée (ENTREE) absente"),
    "ENTREE_INVALID": (VISIT, "date d'entrée (ENTREE) illisible (attendu JJ/MM/AAAA HH:MM)"),
    "ENTREE_OUTSIDE_PERIOD": (VISIT, "date d'entrée hors de la période DATEDEBUT–DATEFIN du fichier"),
    "ITEM_TOO_LONG": (VISIT, "élément régional du passage trop long (plus de 1000 caractères)"),
    "ENCODING": (WARNING, "encodage corrigé à la lecture"),
    "PERIOD_INVALID": (WARNING, "DATEDEBUT/DATEFIN illisible : période déduite des dates d'entrée"),
    "NO_VISIT": (WARNING, "fichier sans aucun passage : la période est vidée"),
    "PERIOD_BOUNDED": (WARNING, "période déclarée trop large : jours éloignés des passages non remplacés"),
    "ORDRE_INVALID": (WARNING, "ORDRE illisible : 0 retenu"),
    "CP_FORMAT": (QUALITY, "code postal mal formé (5 caractères, 2A/2B, XX999, 99XXX, 99999)"),
    "NAISSANCE_INVALID": (QUALITY, "date de naissance illisible"),
    "AGE_RANGE": (QUALITY, "âge hors de 0–120 ans"),
    "SORTIE_INVALID": (QUALITY, "date de sortie illisible"),
    "DURATION_NEGATIVE": (QUALITY, "sortie avant ou à l'heure de l'entrée"),
    "DURATION_TOO_LONG": (QUALITY, "durée de passage supérieure à 72 heures"),
    "PROVENANCE_INCOHERENT": (QUALITY, "PROVENANCE incohérente avec MODE_ENTREE"),
    "DESTINATION_INCOHERENT": (QUALITY, "DESTINATION incohérente avec MODE_SORTIE"),
    "ORIENT_INCOHERENT": (QUALITY, "ORIENT incohérente avec MODE_SORTIE"),
    "DP_FORMAT": (QUALITY, "diagnostic principal hors format CIM-10"),
    "DA_FORMAT": (QUALITY, "diagnostic associé hors format CIM-10"),
    "ACTE_FORMAT": (QUALITY, "acte hors format CCAM"),
}
# Rules the intake applies to an inbox entry or on loading (its name, its kind, what the database says), not
# rpu.checks.check_file on the content: tested by tests/test_intake_fortress.py.
INTAKE_RULES = frozenset({"NAME_INVALID", "NAME_TOO_LONG", "NOT_A_FILE", "DATABASE_REFUSED", "CHECK_FAILED"})
for _item in ("SEXE", "MODE_ENTREE", "PROVENANCE", "TRANSPORT", "TRANSPORT_PEC", "GRAVITE", "MODE_SORTIE",
              "DESTINATION", "ORIENT"):
    RULES[f"{_item}_DOMAIN"] = (QUALITY, f"valeur de {_item} hors nomenclature")


@dataclass(frozen=True)
class Problem:
    rule: str
    message: str
    line: int | None = None
    visit: int | None = None   # 1-based index of the visit (PATIENT) in the file

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule}")

    @property
    def level(self) -> str:
        return RULES[self.rule][0]

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        where = []
        if self.line:
            where.append(f"ligne {self.line}")
        if self.visit:
            where.append(f"passage n°{self.visit}")
        return f"[{self.rule}] {', '.join(where) + ' : ' if where else ''}{self.message}"
