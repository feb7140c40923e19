"""What can be read: one module per hardware source, each behind :class:`Source`.

Sources do no I/O beyond the device they read and know nothing of InfluxDB.
"""
