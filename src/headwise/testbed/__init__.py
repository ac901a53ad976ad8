"""The hallucination testbed that runs on a laptop CPU: OpenMoji scenes with COCO-format annotations and POPE
questions (`dataset`, `scenes`), the emoji-llava model built from SmolLM2 (`model`), its trainer (`train`), and the
table that compares decoding methods on them (`evaluate`)."""
