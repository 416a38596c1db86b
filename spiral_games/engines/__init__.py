"""Inference engines behind one small interface; heavy backends are imported lazily."""
