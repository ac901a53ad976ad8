"""The decoder that eval's CHAIR and POPE runners call, built from a `DecodeConfig`.

eval scores and knows no method; the VHR recipes build a `Decoder` here and hand it over.
"""

from __future__ import annotations

from headwise.eval.vlm import Decoder
from headwise.vhr.config import DecodeConfig
from headwise.vhr.inputs import load_image


def decoder(model, processor, cfg: DecodeConfig) -> Decoder:
    """A Decoder for eval's runners: loads each image and decodes with `headwise.vhr.generate`."""
    from headwise.vhr import generate

    def describe(files, prompts):
        images = [load_image(f) for f in files]
        return generate(model, processor, images, prompts, cfg.options, seed=cfg.seed,
                        max_new_tokens=cfg.max_new_tokens).texts

    return Decoder(describe, cfg.to_dict(), prompt=cfg.prompt, seed=cfg.seed, batch_size=cfg.batch_size,
                   label=cfg.method)
