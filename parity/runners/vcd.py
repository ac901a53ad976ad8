"""Runs DAMO-NLP-SG/VCD's sampling step and noise schedule in its venv (see parity/vcd_pai.py for the adaptations).

stdin: JSON {input, repo, cases, noise_steps, noise_seed}; stdout: one JSON line.
"""

import json
from types import SimpleNamespace

import torch
from common import argparse_defaults, start, warpers

payload, inputs = start()
from transformers import LogitsProcessorList  # noqa: E402
from transformers.generation.stopping_criteria import MaxLengthCriteria, StoppingCriteriaList  # noqa: E402
from vcd_utils.vcd_add_noise import add_diffusion_noise  # noqa: E402
from vcd_utils.vcd_sample import sample  # noqa: E402

main, contrast = inputs["main"], inputs["contrast"]
steps, batch, _ = main.shape


class StandIn:
    """What sample() asks of a model: the clean stream's logits, then the noised stream's, step by step."""

    def __init__(self):
        self.step = {"clean": 0, "cd": 0}
        self.config = SimpleNamespace(is_encoder_decoder=False)
        self.generation_config = SimpleNamespace(pad_token_id=0, eos_token_id=None, output_scores=False,
                                                 output_attentions=False, output_hidden_states=False,
                                                 return_dict_in_generate=False)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        return {"stream": "clean"}

    def prepare_inputs_for_generation_cd(self, input_ids, **kwargs):
        return {"stream": "cd"}

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False):
        return model_kwargs

    def __call__(self, stream, **kwargs):
        source = main if stream == "clean" else contrast
        logits = source[self.step[stream]][:, None, :]
        self.step[stream] += 1
        return SimpleNamespace(logits=logits)


recorded = []
real_multinomial = torch.multinomial


def recording(probs, num_samples=1, **kwargs):
    recorded.append(probs.clone())
    return probs.argmax(-1, keepdim=True)


torch.multinomial = recording
results = []
for cd_alpha, cd_beta, temperature, top_p in payload["cases"]:
    recorded.clear()
    input_ids = torch.zeros(batch, 1, dtype=torch.long)
    stop = StoppingCriteriaList([MaxLengthCriteria(max_length=1 + steps)])
    sample(StandIn(), input_ids, logits_processor=LogitsProcessorList(), stopping_criteria=stop,
           logits_warper=warpers(temperature, top_p), images_cd=torch.zeros(1), cd_alpha=cd_alpha, cd_beta=cd_beta)
    results.append({"cd_alpha": cd_alpha, "cd_beta": cd_beta, "temperature": temperature, "top_p": top_p,
                    "probs": torch.stack(recorded).tolist()})
torch.multinomial = real_multinomial

noised = []
for step in payload["noise_steps"]:
    torch.manual_seed(payload["noise_seed"])
    noised.append({"step": step, "seed": payload["noise_seed"],
                   "pixels": add_diffusion_noise(inputs["pixels"], step).tolist()})

defaults = argparse_defaults(f"{payload['repo']}/experiments/eval/object_hallucination_vqa_llava.py")
print(json.dumps({"cases": results, "noise": noised,
                  "defaults": {k: defaults[k] for k in ("cd_alpha", "cd_beta", "noise_step", "temperature", "top_p")},
                  "sample_default_cd_alpha_when_not_passed": 0.5}))
