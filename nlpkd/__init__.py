"""nlpkd: knowledge distillation for Hugging Face NLP models."""

__version__ = "0.1.0"
