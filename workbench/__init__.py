"""LoRA Workbench: fine-tune GPT-2 as a text classifier with low-rank adapters."""

__version__ = "0.1.0"
