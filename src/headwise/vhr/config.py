"""The settings of each decoding method (greedy, VHR, VCD, PAI), and of a decoding run (`DecodeConfig`).

Each method's options are one `Settings` dataclass, checked in its `validate`; `headwise.vhr.methods`
registers the method's name with its config class and its generate function. The paper's variants are
presets of `VHRConfig` (docs/vhr.md#presets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headwise.config import Settings
from headwise.errors import HeadwiseError

HEAD_CHOICES = ("vhd", "random", "complement")
POSITIONS = ("all", "generated")


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise HeadwiseError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}.")
    return value


def check_alpha(alpha: float) -> float:
    if not alpha > 0:
        raise HeadwiseError(f"alpha must be > 0 (2 reinforces, 1 changes nothing), got {alpha}.")
    return float(alpha)


@dataclass
class GreedyConfig(Settings):
    """The base decoder: greedy (or what the generate keyword arguments ask for), nothing changed. No options."""


@dataclass
class VHRConfig(Settings):
    """VHR (He et al., ACL 2025): heads chosen per sample by VHD at the first step, scaled for the whole generation.

    Args:
        alpha: scale of the chosen heads (> 0; 2 is the paper's, 1 changes nothing).
        layers: reinforced layers; None: layer 1 plus the last 14/32 of the depth (the paper's LLaVA setting).
        heads: vhd (the paper's choice), random (as many per layer and sample, drawn with the run's seed) or
            complement (as many, drawn from those VHD did not choose): ablations that test the choice.
        positions: all (the paper: every position the layer processes) or generated (only the positions that
            predict output tokens): an ablation of the placement.
        outlier_rule: apply Eq. 6 before the median split (zero heads whose VHD and text-only norm are both
            above mean + std of the layer).
        reinforce_text: scale the chosen heads in the image-free rows of the lockstep too (the paper's reading
            of "the previous layers are already reinforced"; it does not say).
    """

    alpha: float = 2.0
    layers: list[int] | None = None
    heads: str = "vhd"
    positions: str = "all"
    outlier_rule: bool = True
    reinforce_text: bool = True

    PRESETS = {
        "paper": {"alpha": 2.0, "layers": None, "heads": "vhd", "positions": "all", "outlier_rule": True,
                  "reinforce_text": True},
        # Eq. 6 off: the median split on raw VHD, the ablation of the outlier rule.
        "no-outlier-rule": {"outlier_rule": False},
        # Only the image rows carry the reinforcement in the lockstep: the other reading of Alg. 1.
        "image-only": {"reinforce_text": False},
    }

    def validate(self) -> None:
        self.alpha = check_alpha(self.alpha)
        check_choice(self.heads, HEAD_CHOICES, "heads")
        check_choice(self.positions, POSITIONS, "positions")
        if self.layers is not None:
            self.layers = [int(layer) for layer in self.layers]


@dataclass
class VCDConfig(Settings):
    """VCD (Leng et al., CVPR 2024): contrast with the image under diffusion noise (DAMO-NLP-SG/VCD's defaults).

    Args:
        cd_alpha: weight of the contrast, logits (1 + a) l - a l_noised.
        cd_beta: plausibility cut-off: only tokens with p >= beta * p_max of the clean stream.
        noise_step: step of the 1000-step forward diffusion the contrast image is taken at.
    """

    cd_alpha: float = 1.0
    cd_beta: float = 0.1
    noise_step: int = 500

    def validate(self) -> None:
        if not 0 <= self.noise_step < 1000:
            raise HeadwiseError(f"noise step must be in [0, 1000), got {self.noise_step}.")
        if not 0 < self.cd_beta <= 1:
            raise HeadwiseError(f"cd_beta must be in (0, 1], got {self.cd_beta}.")


@dataclass
class PAIConfig(Settings):
    """PAI (Liu et al., ECCV 2024): attention to image keys amplified, contrasted with the image-free prompt.

    Args:
        pai_alpha: the boost, a |score| added to the last query's pre-softmax scores on image keys.
        pai_gamma: the contrast weight, g (log p - log p_text) + log p_text.
        pai_layers: [start, end) of the edited layers; None: from layer 2 to the last (LALBJ/PAI's LLaVA setting).
    """

    pai_alpha: float = 0.2
    pai_gamma: float = 1.1
    pai_layers: tuple[int, int] | None = None

    def validate(self) -> None:
        if self.pai_layers is not None:
            self.pai_layers = tuple(int(v) for v in self.pai_layers)
            if len(self.pai_layers) != 2 or not 0 <= self.pai_layers[0] < self.pai_layers[1]:
                raise HeadwiseError(f"pai_layers must be [start, end) with 0 <= start < end, got {self.pai_layers}.")


def check_vhr_preset(preset: str | None, methods: list[str]) -> str | None:
    """A preset of VHR's settings, refused when unknown or when no decoding it applies to is asked for."""
    from headwise.config import check_preset

    check_preset(preset, VHRConfig)
    if preset is not None and "vhr" not in methods:
        raise HeadwiseError(f"--preset {preset} is a preset of VHR's settings; it does nothing for --method "
                            f"{','.join(methods)}.")
    return preset


def method_config(method: str) -> type[Settings]:
    from headwise.vhr.methods import METHODS, check_method

    return METHODS[check_method(method)].config


@dataclass
class DecodeConfig(Settings):
    """How the captions or answers of a model-in-the-loop run are decoded (the same for every image).

    Args:
        method: a registered decoding method (`headwise.vhr.methods.METHODS`: greedy, vhr, vcd, pai).
        options: that method's settings (its config class; its defaults when None).
        prompt: the instruction given with every CHAIR image (POPE uses each question's text).
        max_new_tokens: the length cap. batch_size: images per generate() call.
        seed: of the image sample, of transformers' RNGs and of the method's random draws (VHR's random heads,
            sampling).
    """

    method: str = "vhr"
    options: Any = None
    prompt: str = "Please describe this image in detail."
    max_new_tokens: int = 64
    batch_size: int = 1
    seed: int = 0

    def validate(self) -> None:
        cls = method_config(self.method)
        if self.options is None:
            self.options = cls()
        elif isinstance(self.options, dict):
            self.options = cls.from_dict(self.options)
        elif type(self.options) is not cls:
            raise HeadwiseError(f"method {self.method!r} takes {cls.__name__} options, not "
                                f"{type(self.options).__name__}.")
        if min(self.max_new_tokens, self.batch_size) < 1:
            raise HeadwiseError("--max-new-tokens and --batch-size must be at least 1.")

    @classmethod
    def upgrade(cls, record: dict[str, Any]) -> dict[str, Any]:
        """Releases up to 0.1.0 recorded VHR's alpha and layers beside the method (for every method) and its
        ablations, where not the default, in `extra`; they are the method's options now."""
        record = dict(record)
        if "extra" not in record and "alpha" not in record:
            return record
        legacy = {"alpha": record.pop("alpha", 2.0), "layers": record.pop("layers", None),
                  **(record.pop("extra", None) or {})}
        if record.get("method", "vhr") == "vhr":
            record["options"] = legacy
        else:
            vhr_only = {"alpha", "layers", "heads", "positions"}  # recorded for every method, used by VHR alone
            record["options"] = {k: v for k, v in legacy.items() if k not in vhr_only}
        return record


__all__ = ["DecodeConfig", "GreedyConfig", "HEAD_CHOICES", "PAIConfig", "POSITIONS", "VCDConfig", "VHRConfig",
           "check_alpha", "check_choice", "check_vhr_preset", "method_config"]
