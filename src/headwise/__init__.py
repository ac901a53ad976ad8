"""headwise: find and steer individual attention heads of HuggingFace transformers models."""

from headwise.errors import AssetMissingError, HeadwiseError, UnsupportedModelError

__version__ = "0.1.0"


def __getattr__(name):
    # Keep `import headwise` (and the CLI's --help) fast: torch and transformers load on first use.
    if name == "load_model":
        from headwise.models import load_model
        return load_model
    if name in ("layout", "capture_heads", "scale_heads", "attention_maps"):
        from headwise import heads
        return getattr(heads, name)
    raise AttributeError(f"module 'headwise' has no attribute {name!r}")


__all__ = ["AssetMissingError", "HeadwiseError", "UnsupportedModelError", "load_model", "layout",
           "capture_heads", "scale_heads", "attention_maps", "__version__"]
