"""Flag groups and configs (``cli``), training steps, validation and logging (``training``), test-time
detection (``inference``, ``frame_cache``), online detection and its live sources (``online``, ``live``),
ONNX export (``export``) and the pipeline's stage bookkeeping (``stages``).

Functions here raise exceptions that name the file, video or flag at fault; only the scripts' ``main``
turn them into exit messages."""
