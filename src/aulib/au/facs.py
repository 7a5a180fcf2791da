"""FACS Action Unit names and emotion-prototype matches, for everything a person reads.

Names are those of the Facial Action Coding System: P. Ekman & W. V. Friesen (1978), *Facial
Action Coding System: A Technique for the Measurement of Facial Movement*, Consulting
Psychologists Press, Palo Alto; wording as in the revised manual, P. Ekman, W. V. Friesen &
J. C. Hager (2002), *Facial Action Coding System: The Manual*, Research Nexus, Salt Lake City.
The table covers every AU aulib's models output (the 17 AUs of the SVM/SVR banks and of the multitask heads,
:mod:`aulib.au.codes`), the prototype AUs of :mod:`aulib.au.emotion_rules` and the other
main-code AUs CK+ codes, so a new model's AU gets a name without code changes.

Prototype matches (:func:`prototype_matches`) say how much of each EMFACS emotion prototype the
occurrence models saw, as a count ("2 of 2 prototype AUs"), and classify it:

- ``full``: every modelled prototype AU present — the only case reported as a *match*;
- ``partial``: more than half of them, and at least two — reported as partial, with the count;
- ``weak``: one AU, or half or less — not reported as an emotion at all.

Why: one AU is shared by several prototypes (AU12 is in happiness *and* contempt; AU1, AU2, AU5
and AU26 in surprise *and* fear), so a lone AU or a minority of a prototype says nothing about
which emotion, if any, is shown; "contempt 50 %" on every smile was exactly that. The raw
percentages stay in the table's ``rule_*`` columns unchanged.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from aulib.au.emotion_rules import PROTOTYPES
from aulib.face.record import au_name

#: FACS main codes → name (lower case, as written after the code: "AU12 lip corner puller").
FACS_NAMES: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    8: "lips toward each other",
    9: "nose wrinkler",
    10: "upper lip raiser",
    11: "nasolabial deepener",
    12: "lip corner puller",
    13: "sharp lip puller",
    14: "dimpler",
    15: "lip corner depressor",
    16: "lower lip depressor",
    17: "chin raiser",
    18: "lip pucker",
    19: "tongue show",
    20: "lip stretcher",
    21: "neck tightener",
    22: "lip funneler",
    23: "lip tightener",
    24: "lip pressor",
    25: "lips part",
    26: "jaw drop",
    27: "mouth stretch",
    28: "lip suck",
    38: "nostril dilator",
    39: "nostril compressor",
    41: "lid droop",
    42: "slit",
    43: "eyes closed",
    44: "squint",
    45: "blink",
    46: "wink",
}

# "AU12" → 12 for the AU labels the table helpers return (built from au_name: a lookup, no parsing).
_BY_LABEL: dict[str, int] = {au_name(a): a for a in range(100)}


def facs_name(au: int | str) -> str:
    """The FACS name of an AU number or of an ``AU12``-style label; ``""`` when FACS has none."""
    number = _BY_LABEL.get(au) if isinstance(au, str) else int(au)
    return FACS_NAMES.get(number, "") if number is not None else ""


def au_label(au: int | str) -> str:
    """``"AU12 lip corner puller"`` for 12 or ``"AU12"``; just the code when the number has no FACS name."""
    code = au if isinstance(au, str) else au_name(au)
    name = facs_name(au)
    return f"{code} {name}" if name else code


@dataclass(frozen=True)
class PrototypeMatch:
    """How much of one emotion prototype a face shows (see the module docstring for the classes)."""

    emotion: str
    present: tuple[int, ...]
    modelled: tuple[int, ...]

    @property
    def count(self) -> str:
        """``"2 of 2 prototype AUs"``."""
        return f"{len(self.present)} of {len(self.modelled)} prototype AUs"

    @property
    def level(self) -> str:
        """``full``, ``partial`` or ``weak``."""
        n, m = len(self.present), len(self.modelled)
        if m and n == m:
            return "full"
        if n >= 2 and 2 * n > m:
            return "partial"
        return "weak"

    def describe(self) -> str:
        """``"happiness (2 of 2 prototype AUs: AU06+AU12)"``."""
        which = "+".join(au_name(a) for a in self.present)
        return f"{self.emotion} ({self.count}{': ' + which if which else ''})"


def prototype_matches(aus: Sequence[int], present: Collection[int] | Iterable[int]) -> list[PrototypeMatch]:
    """Every emotion prototype's match for a face with AU models ``aus`` and AUs ``present``.

    Prototype AUs without a model (e.g. AU16) are left out of the count, as in the ``rule_*``
    percentages. Sorted: full matches first, then by the share present, then by name.
    """
    on = set(present)
    out = []
    for emotion, proto in PROTOTYPES.items():
        modelled = tuple(a for a in proto if a in aus)
        if modelled:
            out.append(PrototypeMatch(emotion, tuple(a for a in modelled if a in on), modelled))
    return sorted(out, key=lambda m: (m.level != "full", -len(m.present) / len(m.modelled), m.emotion))


def summarize_matches(matches: Sequence[PrototypeMatch]) -> str:
    """One line for people: ``"happiness (2 of 2 prototype AUs: AU06+AU12); partly: fear (4 of 7 …)"``,
    or ``"no emotion prototype matched"``."""
    full = [m.describe() for m in matches if m.level == "full"]
    part = [m.describe() for m in matches if m.level == "partial"]
    text = ", ".join(full) if full else "no emotion prototype matched"
    if part:
        text += "; partly: " + ", ".join(part)
    return text
