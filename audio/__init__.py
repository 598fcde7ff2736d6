"""Audio file I/O: WAV reading, validation, resampling and writing (not the bus)."""
