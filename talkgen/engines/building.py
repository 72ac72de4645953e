"""One lock for building torch models in this process.

torch's default dtype is process-wide, and transformers sets it to the LLM's (bfloat16 on a CPU
that has it) while it builds the LLM. A model built in another thread at that moment, the voice
a chat or a worker loads beside the LLM, gets bfloat16 weights, and its checkpoint is rounded
into them (seen in a chat: "Input type (float) and bias type (c10::BFloat16) should be the
same"). Every engine builds its torch modules under this lock, the LLM included.
"""

from __future__ import annotations

import threading

BUILDING = threading.Lock()
