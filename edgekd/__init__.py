"""edgekd: distill, prune, quantize, export, compile, profile and gate edge models from one YAML."""

__version__ = "0.1.0"


def run(config, out=None, **kwargs):
    """Run the pipeline from Python; see :func:`edgekd.pipeline.run`."""
    from .pipeline import run as _run

    return _run(config, out, **kwargs)


def load_config(path):
    from .config import load_config as _load

    return _load(path)
