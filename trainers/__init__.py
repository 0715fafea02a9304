"""Trainers that read recorded episodes and write Hugging Face checkpoints (`orchard-train`).

`sft` is the entry point (`train(SFTConfig(...))`); nothing here is imported until it is used, so importing
the package loads neither torch nor transformers.
"""
