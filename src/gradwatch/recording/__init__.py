"""Recording: ``watch()``, the Recorder's hooks, on-device statistics and flushing."""
