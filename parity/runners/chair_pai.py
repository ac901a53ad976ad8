"""Runs the NLTK CHAIR evaluator (LALBJ/PAI's chair.py, the Python 3 port of LisaAnne/Hallucination's that OPERA
and VHR report with) in its venv, on captions with given ground-truth COCO objects.

stdin: JSON {repo, nltk_data, captions}; stdout: one JSON line. See parity/chair.py for the adaptations.
"""

import json
import os
import sys

payload = json.loads(sys.stdin.read())
os.environ["NLTK_DATA"] = payload["nltk_data"]
sys.path.insert(0, payload["repo"])
import nltk  # noqa: E402
from nltk.corpus import wordnet  # noqa: E402
from nltk.stem import WordNetLemmatizer  # noqa: E402

nltk.data.path[:] = [payload["nltk_data"]]  # nothing but the assembled folder, so no other data is used
import chair  # noqa: E402

chair.CHAIR.get_annotations = lambda self: None  # it reads COCO's annotation files; ground truth is given instead
evaluator = chair.CHAIR(coco_path="")
rows = [json.loads(line) for line in open(payload["captions"]) if line.strip()]
evaluator.imid_to_objects = {r["image_id"]: {evaluator.inverse_synonym_dict[name] for name in r["ground_truth"]}
                             for r in rows}
result = evaluator.compute_chair(payload["captions"], "image_id", "caption")

lemmatizer = WordNetLemmatizer()
captions = []
for row, sentence in zip(rows, result["sentences"]):
    tokens = nltk.word_tokenize(row["caption"].lower())  # the steps of caption_to_words (chair.py:220-226),
    tags = [tag for _, tag in nltk.pos_tag(tokens)]       # recorded so headwise's compat mode can be checked
    lemmas = [lemmatizer.lemmatize(t, pos=evaluator.get_wordnet_pos(g) or wordnet.NOUN) for t, g in zip(tokens, tags)]
    captions.append({"image_id": sentence["image_id"], "tokens": tokens, "tags": tags, "lemmas": lemmas,
                     "words": sentence["words"], "mentioned": sentence["mscoco_generated_words"],
                     "hallucinated": [list(h) for h in sentence["mscoco_hallucinated_words"]],
                     "ground_truth": sorted(sentence["mscoco_gt_words"])})
vocabulary = {}  # the synonyms as the evaluator read them (chair.py:155-162), category -> forms, in its order
for form in evaluator.mscoco_objects:
    forms = vocabulary.setdefault(evaluator.inverse_synonym_dict[form], [])
    if form not in forms:
        forms.append(form)
print(json.dumps({"metrics": result["overall_metrics"], "captions": captions, "nltk": nltk.__version__,
                  "vocabulary": vocabulary}))
