"""Smart Turn v3 (BSD-2-Clause, by Daily) end-of-turn model on onnxruntime, one session per process
batched across calls. The ONNX file ships inside the ``pipecat-ai`` wheel, which callgate only reads
(it never imports pipecat): ``pip install 'callgate[turns]'``."""

from callgate.providers.smart_turn.model import SmartTurn, model_path

__all__ = ["SmartTurn", "model_path"]
