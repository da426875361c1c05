import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

# Tests use tiny tensors: one thread avoids OpenMP threads waiting on each other on a loaded 2-core machine.
torch.set_num_threads(1)
