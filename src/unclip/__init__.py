"""unclip: a self-hosted reproduction of DALL·E 2 (unCLIP)."""

from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent.parent
BUNDLED_MODEL_DIR = REPO_ROOT / "models" / "unclip-emoji"
