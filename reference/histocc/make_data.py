"""ADDITION: synthetic finetuning CSV in the upstream input format (not part of upstream).

`python -m reference.histocc.make_data --out FILE.csv --rows N --seed S` writes
`occ1,lang,hisco_1,hisco_2,hisco_3`: occupational descriptions in five languages with
1-3 five-character codes per row. Missing codes are a single space, as in upstream data;
a few rows have no first code (upstream turns those into '?'). Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys

TARGET_COLS = ["hisco_1", "hisco_2", "hisco_3"]
MISSING = " "

# code -> description per language (en, da, sv, nl, fr). Codes are HISCO-shaped, not real labels.
_OCCUPATIONS = {
    "61110": ("farmer", "landmand", "bonde", "landbouwer", "cultivateur"),
    "64100": ("fisherman", "fisker", "fiskare", "visser", "pecheur"),
    "83110": ("blacksmith", "smed", "smed", "smid", "forgeron"),
    "95410": ("carpenter", "tomrer", "snickare", "timmerman", "charpentier"),
    "13020": ("school teacher", "skolelaerer", "skollarare", "onderwijzer", "instituteur"),
    "54020": ("servant", "tjenestepige", "piga", "dienstbode", "domestique"),
    "99910": ("day labourer", "daglejer", "dagsverkare", "dagloner", "journalier"),
    "79100": ("tailor", "skraedder", "skraddare", "kleermaker", "tailleur"),
    "80110": ("shoemaker", "skomager", "skomakare", "schoenmaker", "cordonnier"),
    "41025": ("merchant", "kobmand", "kopman", "koopman", "marchand"),
    "77610": ("baker", "bager", "bagare", "bakker", "boulanger"),
    "75400": ("weaver", "vaever", "vavare", "wever", "tisserand"),
    "77120": ("miller", "moller", "mjolnare", "molenaar", "meunier"),
    "98135": ("sailor", "somand", "sjoman", "matroos", "marin"),
    "39310": ("clerk", "kontorist", "kontorist", "klerk", "commis"),
}
_LANGS = ("en", "da", "se", "nl", "fr")
_AND = {"en": "and", "da": "og", "se": "och", "nl": "en", "fr": "et"}
_PREFIXES = {
    "en": ("former", "master", "journeyman"),
    "da": ("forhenvaerende", "mester", "svend"),
    "se": ("forre detta", "mastare", "gesall"),
    "nl": ("gewezen", "meester", "gezel"),
    "fr": ("ancien", "maitre", "compagnon"),
}
_UNKNOWN = {"en": "unknown", "da": "ukendt", "se": "okand", "nl": "onbekend", "fr": "inconnu"}


def _make_row(rng: random.Random) -> list[str]:
    lang = rng.choice(_LANGS)
    li = _LANGS.index(lang)
    if rng.random() < 0.03:
        # No first code: upstream fills it with '?'.
        return [_UNKNOWN[lang], lang, MISSING, MISSING, MISSING]
    n_codes = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
    codes = rng.sample(sorted(_OCCUPATIONS), n_codes)
    parts = [_OCCUPATIONS[c][li] for c in codes]
    if rng.random() < 0.2:
        parts[0] = f"{rng.choice(_PREFIXES[lang])} {parts[0]}"
    text = f" {_AND[lang]} ".join(parts)
    if rng.random() < 0.1:
        text = text.upper()
    return [text, lang, *codes, *[MISSING] * (len(TARGET_COLS) - n_codes)]


def make_rows(n_rows: int, seed: int) -> list[list[str]]:
    """Deterministic rows for a seed; uses a private RNG, never the global one."""
    rng = random.Random(seed)
    return [_make_row(rng) for _ in range(n_rows)]


def write_csv(path: str, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["occ1", "lang", *TARGET_COLS])
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic OccCANINE finetuning CSV (addition).")
    parser.add_argument("--out", required=True, help="output CSV path")
    parser.add_argument("--rows", type=int, default=1000, help="number of rows")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed; same seed gives the same file")
    args = parser.parse_args(argv)
    write_csv(args.out, make_rows(args.rows, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
