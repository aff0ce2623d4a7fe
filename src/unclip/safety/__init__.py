"""Safety system: content policy for prompts, upload checks and provenance of outputs (see docs/safety.md).

Submodules import their heavy dependencies lazily: `policy` loads the embedding model on first use,
`faces` imports OpenCV, `provenance` imports NumPy and Pillow only.
"""
