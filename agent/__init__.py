"""When and where readings go: tick loop, encoding, write-ahead log, sender."""
