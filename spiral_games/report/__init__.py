"""What a run leaves for people to read: transcripts, the before/after summary and curves,
the replay viewer."""
