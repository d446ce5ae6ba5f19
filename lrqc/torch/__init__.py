"""lrqc inside torch models (the optional extra `lrqc[torch]`; `import lrqc` never imports
torch): Linear, a drop-in inference replacement of torch.nn.Linear computing x Wᵀ + bias by
an lrqc scheme; quantize(model, scheme or rules), which replaces a model's Linear layers in
place and reports each; load(model, state_dict), which restores a saved quantized model
without re-quantizing it."""

from ..errors import MissingExtra

try:
    import torch  # noqa: F401
except ImportError:
    raise MissingExtra("lrqc.torch needs torch: pip install 'lrqc[torch]'") from None

from .linear import Linear  # noqa: E402
from .model import LayerReport, QuantizeReport, load, quantize  # noqa: E402

__all__ = ["LayerReport", "Linear", "QuantizeReport", "load", "quantize"]
