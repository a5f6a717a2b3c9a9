"""ULDL Studio: uncertainty-aware label distributions for facial-expression datasets."""
import os

# PyTorch's OpenMP threads busy-wait between parallel regions by default. When anything else
# wants the CPU (the GUI thread, another training job) that spinning starves everyone:
# measured on 2 cores with one competing job, a training step took 2.3 s with the default
# and 0.49 s with PASSIVE. It has to be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
