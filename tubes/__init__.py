"""ROAD's online-tubes (gurkirt/realtime-action-detection) in numpy: detection files, online linking,
temporal trimming, video-mAP and frame-mAP, tube files, the per-video runner and its flags.
Never imports torch (tests/test_layout.py pins it)."""
