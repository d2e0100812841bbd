"""Flag groups and configs (``cli``), training steps, validation and logging (``training``), test-time
detection (``inference``, ``frame_cache``), online detection and its live sources (``online``, ``live``),
ONNX export (``export``), the pipeline's stage bookkeeping (``stages``), boxes drawn on frames (``drawing``) and the
page on a run (``report``).

Functions here raise exceptions that name the file, video or flag at fault; only the scripts' ``main``
turn them into exit messages."""
