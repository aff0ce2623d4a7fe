"""Evaluation of each stage and of whole generations, measured with our own CLIP."""
