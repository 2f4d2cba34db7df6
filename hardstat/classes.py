"""Class names and WordNet noun synsets of the datasets hardstat knows (no torch, no nltk).

Every dataset records, per label, a class name and (where one exists) a WordNet 3.0 noun synset.
``wnid`` is the ImageNet-style id ``n<8-digit noun offset>``; ``synset`` the NLTK name
(``dog.n.01``). Either can be ``None`` when unknown (e.g. a folder dataset whose folder names are
not wnids).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ClassInfo:
    """One class of a dataset: its integer label, a readable name and its WordNet noun."""

    label: int
    name: str
    synset: str | None = None
    wnid: str | None = None

    def __post_init__(self) -> None:
        if self.label < 0:
            raise ValueError(f"class label must be >= 0, got {self.label}")
        if self.wnid is not None and not _WNID.match(self.wnid):
            raise ValueError(f"wnid must look like n02084071, got {self.wnid!r}")


def is_wnid(text: str) -> bool:
    """True for ImageNet-style WordNet ids such as ``n02084071``."""
    return bool(_WNID.match(text))


def wnid_offset(wnid: str) -> int:
    """The WordNet noun offset of a wnid: ``n02084071`` -> 2084071."""
    if not is_wnid(wnid):
        raise ValueError(f"not a wnid: {wnid!r}")
    return int(wnid[1:])


CIFAR10_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(0, "airplane", "airplane.n.01", "n02691156"),
    ClassInfo(1, "automobile", "car.n.01", "n02958343"),
    ClassInfo(2, "bird", "bird.n.01", "n01503061"),
    ClassInfo(3, "cat", "cat.n.01", "n02121620"),
    ClassInfo(4, "deer", "deer.n.01", "n02430045"),
    ClassInfo(5, "dog", "dog.n.01", "n02084071"),
    ClassInfo(6, "frog", "frog.n.01", "n01639765"),
    ClassInfo(7, "horse", "horse.n.01", "n02374451"),
    ClassInfo(8, "ship", "ship.n.01", "n04194289"),
    ClassInfo(9, "truck", "truck.n.01", "n04490091"),
)


CIFAR100_CLASSES: tuple[ClassInfo, ...] = (
    # The 100 fine labels in torchvision's order (alphabetical). Synsets were chosen by the
    # superclass each class belongs to (e.g. "fruit and vegetables" -> food senses, "trees" ->
    # the tree sense, "aquatic mammals" -> the animal sense) and checked against WordNet 3.0 by
    # bench/verify_class_synsets.py.
    ClassInfo(0, "apple", "apple.n.01", "n07739125"),
    # WordNet has no aquarium-fish noun; goldfish.n.01 ("used as pond or aquarium fishes")
    ClassInfo(1, "aquarium_fish", "goldfish.n.01", "n01443537"),
    ClassInfo(2, "baby", "baby.n.01", "n09827683"),
    ClassInfo(3, "bear", "bear.n.01", "n02131653"),
    ClassInfo(4, "beaver", "beaver.n.07", "n02363005"),
    ClassInfo(5, "bed", "bed.n.01", "n02818832"),
    ClassInfo(6, "bee", "bee.n.01", "n02206856"),
    ClassInfo(7, "beetle", "beetle.n.01", "n02164464"),
    ClassInfo(8, "bicycle", "bicycle.n.01", "n02834778"),
    ClassInfo(9, "bottle", "bottle.n.01", "n02876657"),
    ClassInfo(10, "bowl", "bowl.n.01", "n02881193"),
    ClassInfo(11, "boy", "male_child.n.01", "n10285313"),
    ClassInfo(12, "bridge", "bridge.n.01", "n02898711"),
    ClassInfo(13, "bus", "bus.n.01", "n02924116"),
    ClassInfo(14, "butterfly", "butterfly.n.01", "n02274259"),
    ClassInfo(15, "camel", "camel.n.01", "n02437136"),
    ClassInfo(16, "can", "can.n.01", "n02946921"),
    ClassInfo(17, "castle", "castle.n.02", "n02980441"),
    ClassInfo(18, "caterpillar", "caterpillar.n.01", "n02309337"),
    ClassInfo(19, "cattle", "cattle.n.01", "n02402425"),
    ClassInfo(20, "chair", "chair.n.01", "n03001627"),
    ClassInfo(21, "chimpanzee", "chimpanzee.n.01", "n02481823"),
    ClassInfo(22, "clock", "clock.n.01", "n03046257"),
    ClassInfo(23, "cloud", "cloud.n.02", "n09247410"),
    ClassInfo(24, "cockroach", "cockroach.n.01", "n02233338"),
    ClassInfo(25, "couch", "sofa.n.01", "n04256520"),
    ClassInfo(26, "crab", "crab.n.01", "n01976957"),
    ClassInfo(27, "crocodile", "crocodile.n.01", "n01697178"),
    ClassInfo(28, "cup", "cup.n.01", "n03147509"),
    ClassInfo(29, "dinosaur", "dinosaur.n.01", "n01699831"),
    ClassInfo(30, "dolphin", "dolphin.n.02", "n02068974"),
    ClassInfo(31, "elephant", "elephant.n.01", "n02503517"),
    ClassInfo(32, "flatfish", "flatfish.n.02", "n02657368"),
    ClassInfo(33, "forest", "forest.n.02", "n09284015"),
    ClassInfo(34, "fox", "fox.n.01", "n02118333"),
    ClassInfo(35, "girl", "female_child.n.01", "n10084295"),
    ClassInfo(36, "hamster", "hamster.n.01", "n02342885"),
    ClassInfo(37, "house", "house.n.01", "n03544360"),
    ClassInfo(38, "kangaroo", "kangaroo.n.01", "n01877134"),
    # CIFAR-100's superclass lists it as 'computer keyboard'
    ClassInfo(39, "keyboard", "computer_keyboard.n.01", "n03085013"),
    ClassInfo(40, "lamp", "lamp.n.02", "n03636649"),
    ClassInfo(41, "lawn_mower", "lawn_mower.n.01", "n03649909"),
    ClassInfo(42, "leopard", "leopard.n.02", "n02128385"),
    ClassInfo(43, "lion", "lion.n.01", "n02129165"),
    ClassInfo(44, "lizard", "lizard.n.01", "n01674464"),
    ClassInfo(45, "lobster", "lobster.n.02", "n01982650"),
    ClassInfo(46, "man", "man.n.01", "n10287213"),
    ClassInfo(47, "maple_tree", "maple.n.02", "n12752205"),
    ClassInfo(48, "motorcycle", "motorcycle.n.01", "n03790512"),
    ClassInfo(49, "mountain", "mountain.n.01", "n09359803"),
    ClassInfo(50, "mouse", "mouse.n.01", "n02330245"),
    # superclass 'fruit and vegetables': the food sense, as in ImageNet
    ClassInfo(51, "mushroom", "mushroom.n.05", "n07734744"),
    ClassInfo(52, "oak_tree", "oak.n.02", "n12268246"),
    ClassInfo(53, "orange", "orange.n.01", "n07747607"),
    ClassInfo(54, "orchid", "orchid.n.01", "n12041446"),
    ClassInfo(55, "otter", "otter.n.02", "n02444819"),
    ClassInfo(56, "palm_tree", "palm.n.03", "n12582231"),
    ClassInfo(57, "pear", "pear.n.01", "n07767847"),
    ClassInfo(58, "pickup_truck", "pickup.n.01", "n03930630"),
    ClassInfo(59, "pine_tree", "pine.n.01", "n11608250"),
    ClassInfo(60, "plain", "plain.n.01", "n09393605"),
    ClassInfo(61, "plate", "plate.n.04", "n03959485"),
    ClassInfo(62, "poppy", "poppy.n.01", "n11900569"),
    ClassInfo(63, "porcupine", "porcupine.n.01", "n02346627"),
    ClassInfo(64, "possum", "opossum.n.02", "n01874928"),
    ClassInfo(65, "rabbit", "rabbit.n.01", "n02324045"),
    ClassInfo(66, "raccoon", "raccoon.n.02", "n02508021"),
    ClassInfo(67, "ray", "ray.n.07", "n01495701"),
    ClassInfo(68, "road", "road.n.01", "n04096066"),
    ClassInfo(69, "rocket", "rocket.n.01", "n04099429"),
    ClassInfo(70, "rose", "rose.n.01", "n12620196"),
    ClassInfo(71, "sea", "sea.n.01", "n09426788"),
    ClassInfo(72, "seal", "seal.n.09", "n02076196"),
    ClassInfo(73, "shark", "shark.n.01", "n01482330"),
    ClassInfo(74, "shrew", "shrew.n.02", "n01891633"),
    ClassInfo(75, "skunk", "skunk.n.04", "n02445715"),
    ClassInfo(76, "skyscraper", "skyscraper.n.01", "n04233124"),
    ClassInfo(77, "snail", "snail.n.01", "n01944390"),
    ClassInfo(78, "snake", "snake.n.01", "n01726692"),
    ClassInfo(79, "spider", "spider.n.01", "n01772222"),
    ClassInfo(80, "squirrel", "squirrel.n.01", "n02355227"),
    ClassInfo(81, "streetcar", "streetcar.n.01", "n04335435"),
    ClassInfo(82, "sunflower", "sunflower.n.01", "n11978233"),
    ClassInfo(83, "sweet_pepper", "sweet_pepper.n.02", "n07720615"),
    ClassInfo(84, "table", "table.n.02", "n04379243"),
    ClassInfo(85, "tank", "tank.n.01", "n04389033"),
    ClassInfo(86, "telephone", "telephone.n.01", "n04401088"),
    ClassInfo(87, "television", "television_receiver.n.01", "n04405907"),
    ClassInfo(88, "tiger", "tiger.n.02", "n02129604"),
    ClassInfo(89, "tractor", "tractor.n.01", "n04465501"),
    ClassInfo(90, "train", "train.n.01", "n04468005"),
    ClassInfo(91, "trout", "trout.n.02", "n02537085"),
    ClassInfo(92, "tulip", "tulip.n.01", "n12454159"),
    ClassInfo(93, "turtle", "turtle.n.02", "n01662784"),
    ClassInfo(94, "wardrobe", "wardrobe.n.01", "n04550184"),
    # note: WordNet files dolphin.n.02 under whale.n.02 (toothed whales)
    ClassInfo(95, "whale", "whale.n.02", "n02062744"),
    ClassInfo(96, "willow_tree", "willow.n.01", "n12724942"),
    ClassInfo(97, "wolf", "wolf.n.01", "n02114100"),
    ClassInfo(98, "woman", "woman.n.01", "n10787470"),
    ClassInfo(99, "worm", "worm.n.01", "n01922303"),
)


def is_synthetic(spec: str | None) -> bool:
    """True for a ``synthetic[:N]`` dataset spec (generated shapes, see
    ``hardstat.train.data.synthetic_images``)."""
    return spec is not None and spec.strip().lower().split(":", 1)[0] == "synthetic"


def stand_in_note(datasets: dict[str, str | None]) -> str | None:
    """One sentence saying that the classes of the synthetic runs among ``datasets`` (run ->
    dataset spec) are stand-ins, or None when no run is synthetic.

    ``synthetic:N`` images are generated shapes; their 10 classes carry CIFAR-10's names and
    synsets only so that every analysis runs on them, so WordNet statistics of these classes
    describe the borrowed names, not anything the images show.
    """
    runs = sorted(r for r, spec in datasets.items() if is_synthetic(spec))
    if not runs:
        return None
    specs = sorted({str(datasets[r]) for r in runs})
    which = f"run {runs[0]}" if len(runs) == 1 else f"runs {', '.join(runs)}"
    return (
        f"Synthetic stand-ins: {which} trained on {' and '.join(specs)}, generated shapes whose "
        "10 classes borrow CIFAR-10's names and WordNet synsets; class names and WordNet "
        "statistics here describe those borrowed names, not what the images show (a check of "
        "the pipeline, not a semantic finding)."
    )
