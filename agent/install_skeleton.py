"""The configuration skeleton `wattwise agent install` writes.

Kept as Python text so that an installed wheel has it without package data;
``deploy/agent.toml.example`` is the same text for people, and a test keeps the
two identical.
"""

CONFIG_SKELETON = """\
# wattwise agent configuration (/etc/wattwise/agent.toml).
#
# `wattwise agent install` writes this file once and never overwrites it.
# Every key is optional; the values shown are the defaults unless the comment
# says otherwise. Keys left commented out are unset. Any key can also be set
# from the environment as WATTWISE_AGENT_<SECTION>__<KEY>
# (WATTWISE_AGENT_INFLUX__URL=…); the optimizer's WATTWISE_OPTIMIZER_… are not read.
# After editing: `wattwise agent check-config`, then
# `systemctl restart wattwise-agent`.

[agent]
host = ""                 # node name tag; "" = this machine's host name
# Labels become tags on every per-node measurement; the optimizer's placement
# and cooling advice works per zone and rack, so set them on every node.
# labels = { cluster = "c1", zone = "z1", rack = "r01" }
source = "nvml"           # nvml (real GPUs) | sim (simulated fleet, see [agent.sim])
gpu_interval_s = 1.0      # GPU power, clocks, temperatures, utilisation (intervals >= 0.1)
host_interval_s = 10.0    # CPU, memory, disks, network, RAPL, hwmon
job_interval_s = 30.0     # GPU-to-job attribution (Slurm, Kubernetes)
energy_every_s = 10.0     # GPU energy counter (a read costs ~4 ms per GPU)
energy_read = "call"      # call | field: how NVML's energy counter is read

# [agent.sim]             # only for source = "sim"
# nodes = 4
# gpus_per_node = 8
# racks = 1
# zones = 1
# seed = 0

[influx]
# Required: the agent refuses to run without a store URL.
url = ""                  # e.g. "https://influxdb.example:8086" (no user:password@ in it)
api = "v1"                # v1: /write (1.x; 2.x via DBRP; 3.x) | v2: /api/v2/write (1.8+, 2.x, 3.x)
# v1 style
database = "wattwise"
retention_policy = ""     # "" = the database's default
username = ""
# password_file = "/run/credentials/wattwise-agent.service/influx-password"
# v2 style
org = ""
bucket = ""
# token_file = "/run/credentials/wattwise-agent.service/influx-token"
# Secrets come only from files (under systemd: the credentials the unit loads
# from /etc/wattwise/, as above) or from WATTWISE_INFLUX_PASSWORD /
# WATTWISE_INFLUX_TOKEN, never from this file.
# TLS
# ca_file = "/etc/wattwise/ca.pem"
# client_cert = "/etc/wattwise/client.pem"
# client_key = "/etc/wattwise/client.key"
timeout_s = 10.0          # a whole request, 20 at most (the unit stops the agent in 30 s)

[store]
kind = "influx"           # influx | embedded (the local store of `make demo`)
embedded_path = "/var/lib/wattwise/wattwise.sqlite"

[wal]
# The unit can write only below /var/lib/wattwise (StateDirectory=).
dir = "/var/lib/wattwise/wal"
max_bytes = 1073741824    # 1 GiB; beyond it lines are dropped (agent.dropped_lines_total)
sync = "interval"         # always (fsync per tick) | interval (fsync each second) | none (OS)
# dead_letter_dir = "/var/lib/wattwise/dead-letter"   # unset: the agent's default
dead_letter_max_bytes = 67108864   # 64 MiB; when full, refused lines wait in the WAL

[sender]
batch_max_lines = 5000    # at most 5,000 lines per request
backoff_initial_s = 0.5   # first retry delay; doubles up to backoff_max_s, with jitter
backoff_max_s = 60.0
flush_on_stop_s = 10.0    # on stop, keep sending this long; the rest waits in the WAL
# bmc.timeout_s + influx.timeout_s + flush_on_stop_s must stay within 25 s.
hold_after_rejected_batches = 3   # every line refused this often in a row: hold, don't dead-letter

[bmc]
kind = ""                 # "" (none) | redfish | ipmi
url = ""                  # e.g. "https://bmc-node17.example"
username = ""
# password_file = "/run/credentials/wattwise-agent.service/bmc-password"
# ca_file = "/etc/wattwise/bmc-ca.pem"
interval_s = 10.0
timeout_s = 3.0           # 10 at most

[metrics]
prometheus_port = 0       # 0 = off; otherwise serves /metrics (self-metrics) on the address
prometheus_address = "127.0.0.1"  # where /metrics listens (another address opens it up)
export_readings = false   # true: /metrics also serves every reading (docs/prometheus.md)
"""
