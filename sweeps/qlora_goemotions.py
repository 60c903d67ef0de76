"""QLoRA decoders on GoEmotions (28 labels incl. neutral, multi-label Reddit comments): Qwen3-0.6B-Base
writes the emotion names as text, Qwen2.5-7B classifies with a head. The same models, modes and search space
as sweeps/qlora_semeval_ec.py; only the dataset differs. `neutral` is a label here, distinct from the answer
`none` (no label at all).

    python sweeps/qlora_goemotions.py --data-dir ../shared/data/goemotions                 # GPU: both models
    python sweeps/qlora_goemotions.py --data-dir D --models ./qwen3-0.6b-base --budget cpu   # CPU: small only
"""
from dataclasses import replace

from sweeps.qlora_semeval_ec import EXPERIMENT as SEMEVAL_EXPERIMENT
from sweeps.run import main

EXPERIMENT = replace(SEMEVAL_EXPERIMENT, name="qlora_goemotions", dataset="goemotions")

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
