"""Check the class tables in ``hardstat.classes`` against WordNet 3.0 (needs nltk's WordNet).

For every entry of CIFAR10_CLASSES and CIFAR100_CLASSES it checks that

1. labels run 0..N-1 in order, names, synsets and wnids are unique;
2. the synset name exists in WordNet and is a noun;
3. ``synset_from_pos_and_offset("n", offset(wnid))`` is that same synset;
4. the class name (``maple_tree`` -> ``maple``) is one of the synset's lemmas, unless the entry is
   a documented exception (``EXPECTED_NON_LEMMA``);
5. the synset lies under the WordNet anchor(s) of the class's superclass (CIFAR-100's 20 coarse
   classes; CIFAR-10's animal / vehicle split), so a wrong sense (``seal`` the stamp,
   ``dolphin`` the fish) fails;

and prints a table with each definition for a human to read. It also lists, as notes, class pairs
where one synset is a hypernym of another (not an error, but it inflates their similarity).
Exit status 1 on any mismatch.

WordNet offline (see the project's environment notes): NLTK_DATA must point at a directory holding
``corpora/wordnet`` (e.g. built from Debian's wordnet-base). Usage::

    NLTK_DATA=/tmp/nltk_data python bench/verify_class_synsets.py
"""

from __future__ import annotations

import sys
from typing import Any

from hardstat.classes import CIFAR10_CLASSES, CIFAR100_CLASSES, ClassInfo, wnid_offset

# CIFAR-100 coarse classes (the official 20 superclasses) -> members, and the WordNet synsets one
# of which must be a hypernym (or the synset itself) of every member's synset.
CIFAR100_SUPERCLASSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aquatic mammals": (("beaver", "dolphin", "otter", "seal", "whale"), ("mammal.n.01",)),
    "fish": (("aquarium_fish", "flatfish", "ray", "shark", "trout"), ("fish.n.01",)),
    "flowers": (("orchid", "poppy", "rose", "sunflower", "tulip"), ("plant.n.02",)),
    "food containers": (
        ("bottle", "bowl", "can", "cup", "plate"),
        ("container.n.01", "tableware.n.01"),
    ),
    "fruit and vegetables": (
        ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
        ("produce.n.01",),
    ),
    "household electrical devices": (
        ("clock", "keyboard", "lamp", "telephone", "television"),
        # WordNet files the household lamp (lamp.n.02) under furniture.
        ("device.n.01", "electronic_equipment.n.01", "lamp.n.02"),
    ),
    "household furniture": (("bed", "chair", "couch", "table", "wardrobe"), ("furniture.n.01",)),
    "insects": (
        ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
        # WordNet has caterpillar.n.01 under larva.n.01 only, not insect.n.01.
        ("insect.n.01", "larva.n.01"),
    ),
    "large carnivores": (("bear", "leopard", "lion", "tiger", "wolf"), ("carnivore.n.01",)),
    "large man-made outdoor things": (
        ("bridge", "castle", "house", "road", "skyscraper"),
        ("structure.n.01", "road.n.01"),
    ),
    "large natural outdoor scenes": (
        ("cloud", "forest", "mountain", "plain", "sea"),
        (
            "atmospheric_phenomenon.n.01",
            "land.n.04",
            "geological_formation.n.01",
            "body_of_water.n.01",
        ),
    ),
    "large omnivores and herbivores": (
        ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
        ("mammal.n.01",),
    ),
    "medium-sized mammals": (
        ("fox", "porcupine", "possum", "raccoon", "skunk"),
        ("mammal.n.01",),
    ),
    "non-insect invertebrates": (
        ("crab", "lobster", "snail", "spider", "worm"),
        ("invertebrate.n.01",),
    ),
    "people": (("baby", "boy", "girl", "man", "woman"), ("person.n.01",)),
    "reptiles": (("crocodile", "dinosaur", "lizard", "snake", "turtle"), ("reptile.n.01",)),
    "small mammals": (("hamster", "mouse", "rabbit", "shrew", "squirrel"), ("mammal.n.01",)),
    "trees": (
        ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
        ("tree.n.01",),
    ),
    "vehicles 1": (
        ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
        ("conveyance.n.03",),
    ),
    "vehicles 2": (
        ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
        ("conveyance.n.03", "lawn_mower.n.01"),
    ),
}

CIFAR10_SUPERCLASSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vehicles": (("airplane", "automobile", "ship", "truck"), ("conveyance.n.03",)),
    "animals": (("bird", "cat", "deer", "dog", "frog", "horse"), ("animal.n.01",)),
}

# Class names that are (deliberately) not a lemma of their synset, with the reason.
EXPECTED_NON_LEMMA: dict[str, str] = {
    "aquarium_fish": "WordNet 3.0 has no aquarium-fish noun; goldfish.n.01 is the closest",
    "keyboard": "computer_keyboard.n.01: CIFAR-100 lists the class as 'computer keyboard'",
}


def _anchor_map(
    superclasses: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
) -> dict[str, tuple[str, tuple[str, ...]]]:
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for coarse, (members, anchors) in superclasses.items():
        for member in members:
            out[member] = (coarse, anchors)
    return out


def verify_table(
    wn: Any,
    title: str,
    table: tuple[ClassInfo, ...],
    superclasses: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
) -> list[str]:
    """Print one table's check results; return the list of problems found."""
    problems: list[str] = []
    anchors = _anchor_map(superclasses)
    missing = {c.name for c in table} ^ set(anchors)
    if missing:
        problems.append(f"{title}: superclass table and class table differ on {sorted(missing)}")

    for field in ("name", "synset", "wnid"):
        values = [getattr(c, field) for c in table]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            problems.append(f"{title}: duplicate {field}s {dupes}")
    if [c.label for c in table] != list(range(len(table))):
        problems.append(f"{title}: labels are not 0..{len(table) - 1} in order")

    print(f"\n{title} ({len(table)} classes)")
    header = f"{'lbl':>3}  {'name':<14} {'synset':<26} {'wnid':<10} {'check':<5} definition"
    print(header)
    print("-" * len(header))
    synsets = {}
    for c in table:
        row_problems: list[str] = []
        definition = ""
        syn = None
        if c.synset is None or c.wnid is None:
            row_problems.append("synset or wnid missing")
        else:
            try:
                syn = wn.synset(c.synset)
            except Exception as exc:  # nltk raises WordNetError / ValueError
                row_problems.append(f"synset not found ({exc})")
        if syn is not None and c.wnid is not None:
            definition = syn.definition()
            synsets[c.name] = syn
            if syn.pos() != "n":
                row_problems.append(f"not a noun (pos {syn.pos()})")
            by_offset = wn.synset_from_pos_and_offset("n", wnid_offset(c.wnid))
            if by_offset != syn:
                row_problems.append(f"wnid {c.wnid} is {by_offset.name()}")
            if f"n{syn.offset():08d}" != c.wnid:
                row_problems.append(f"offset of {c.synset} is n{syn.offset():08d}")
            lemma = c.name.removesuffix("_tree").lower()
            lemmas = {name.lower() for name in syn.lemma_names()}
            if lemma not in lemmas and c.name not in EXPECTED_NON_LEMMA:
                row_problems.append(f"{lemma!r} not among lemmas {sorted(lemmas)}")
            if c.name in anchors:
                coarse, anchor_names = anchors[c.name]
                ancestors = {s.name() for s in syn.closure(lambda s: s.hypernyms())}
                ancestors.add(syn.name())
                if not ancestors.intersection(anchor_names):
                    row_problems.append(
                        f"not under {' / '.join(anchor_names)} (superclass {coarse!r})"
                    )
        status = "ok" if not row_problems else "FAIL"
        note = " [lemma exception]" if c.name in EXPECTED_NON_LEMMA else ""
        print(
            f"{c.label:>3}  {c.name:<14} {c.synset or '-':<26} {c.wnid or '-':<10} "
            f"{status:<5} {definition[:70]}{note}"
        )
        problems.extend(f"{title} {c.name}: {p}" for p in row_problems)

    nested = []
    for a, sa in synsets.items():
        hypernyms = set(sa.closure(lambda s: s.hypernyms()))
        nested.extend(
            f"{b} ({sb.name()}) is a hypernym of {a}"
            for b, sb in synsets.items()
            if sb in hypernyms
        )
    for line in nested:
        print(f"note: {line}")
    return problems


def main() -> int:
    try:
        from nltk.corpus import wordnet as wn

        wn.ensure_loaded()
    except LookupError:
        print(
            "WordNet not found: set NLTK_DATA to a directory with corpora/wordnet "
            "(see the environment notes) and rerun.",
            file=sys.stderr,
        )
        return 2
    problems = verify_table(wn, "CIFAR-10", CIFAR10_CLASSES, CIFAR10_SUPERCLASSES)
    problems += verify_table(wn, "CIFAR-100", CIFAR100_CLASSES, CIFAR100_SUPERCLASSES)
    print()
    for reason_name, reason in EXPECTED_NON_LEMMA.items():
        print(f"lemma exception: {reason_name}: {reason}")
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    n = len(CIFAR10_CLASSES) + len(CIFAR100_CLASSES)
    print(f"\nall {n} entries match WordNet {wn.get_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
