"""Training: one accelerate-based core and a stage per unCLIP component."""
